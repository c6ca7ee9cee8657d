"""dcign-experiments: the committed record read for reporting (seed groups, params added later)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import experiments as E

RECORD = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "runs.json"


def test_a_run_recorded_before_a_param_existed_groups_with_its_seeds(tmp_path):
    """A run from before lr_schedule (and the other ADDED_PARAMS) and params of other pipelines existed
    is the same setting as a later run with their defaults, so the two form a seed group."""
    new = json.loads(RECORD.read_text())["c05-c04-inv10"]  # recorded with every param of today
    old = json.loads(json.dumps(new))
    old["params"] = {
        k: v for k, v in old["params"].items() if k not in E.ADDED_PARAMS and not k.startswith(E.OTHER_PIPELINES)
    }
    old["params"]["seed"] = 7
    assert set(E.ADDED_PARAMS) <= set(new["params"])  # the later run has them all
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"a-new": new, "b-old": old}))
    runs = E.load_runs(path)
    assert E.seed_groups(runs) == {"a-new": ["a-new", "b-old"]}
    assert runs["b-old"]["params"]["train.lr_schedule"] == "constant"
    assert json.loads(path.read_text())["b-old"]["params"] == old["params"]  # the record stays as written
    # a real difference still separates them
    runs["b-old"]["params"]["train.lr_schedule"] = "cosine"
    assert E.seed_groups(runs) == {}
