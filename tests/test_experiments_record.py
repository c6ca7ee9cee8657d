"""dcign-experiments: the committed record read for reporting (seed groups, params added later)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.study import experiments as E
from pipeline.study import record as R

RECORD = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "runs.json"


def test_a_run_recorded_before_a_param_existed_groups_with_its_seeds(tmp_path):
    """A run from before lr_schedule (and the other ADDED_PARAMS) and params of other pipelines existed
    is the same setting as a later run with their defaults, so the two form a seed group."""
    new = json.loads(RECORD.read_text())["c18-decoder-1000"]  # recorded with every param of today
    new["params"]["train.decoder_steps"] = R.ADDED_PARAMS["train.decoder_steps"]  # its one non-default one
    for added in ("train.decoder_swap", "train.edit_recon", "train.edit_share"):  # added after it was recorded
        new["params"][added] = R.ADDED_PARAMS[added]
    old = json.loads(json.dumps(new))
    old["params"] = {
        k: v for k, v in old["params"].items() if k not in R.ADDED_PARAMS and not k.startswith(R.OTHER_PIPELINES)
    }
    old["params"]["seed"] = 7
    assert set(R.ADDED_PARAMS) <= set(new["params"])  # the later run has them all
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"a-new": new, "a-old": old}))
    runs = R.load_runs(path)
    assert R.seed_groups(runs) == {"a-new": ["a-new", "a-old"]}
    assert runs["a-old"]["params"]["train.lr_schedule"] == "constant"
    assert json.loads(path.read_text())["a-old"]["params"] == old["params"]  # the record stays as written
    # a real difference still separates them
    runs["a-old"]["params"]["train.lr_schedule"] = "cosine"
    assert R.seed_groups(runs) == {}


def test_runs_of_the_same_params_group_by_the_id_their_names_start_with():
    """c05 and c09 ran the same params on code that computes differently: two groups, not one."""
    run = json.loads(RECORD.read_text())["c05-c04-inv10"]
    runs = {
        f"{study}-s{seed}": {**run, "params": {**run["params"], "seed": seed}}
        for study in ("c05", "c09")
        for seed in (0, 1)
    }
    assert R.seed_groups(runs) == {"c05-s0": ["c05-s0", "c05-s1"], "c09-s0": ["c09-s0", "c09-s1"]}


def test_the_runs_table_tells_learning_rates_apart():
    """5e-4 (the default) and 1e-3 are different rows' values, not both 0.001."""
    lines = E.table(R.load_runs(RECORD)).splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines[2:]}
    col = lines[0].split(" | ").index("lr")
    assert (rows["c09-fused-s0"][col], rows["c10-lr-0.001"][col], rows["c12-lr-0.00025"][col]) == (
        "0.0005",
        "0.001",
        "0.00025",
    )


SEEDS = ["c05-c04-inv10", "c05-s1", "c05-s2"]  # the default's three seeds in the record


def test_compare_a_member_of_the_runs_is_always_where_one_more_run_would_be():
    """One of n runs lies at most (n - 1) / sqrt(n) sample stds from their mean, so its prediction p is at
    least 2 * t.sf(1, n - 1) (0.42 for three runs): every figure passes."""
    runs = R.load_runs(RECORD)
    body, ok, n = E.compare_table(runs["c05-s1"]["metrics"], runs, SEEDS)
    assert n == ok and n >= 30
    assert "**< 0.05**" not in body


def test_compare_p_value_is_the_t_prediction_p_value():
    """A figure 2 * sqrt(1 + 1/3) stds from the mean of three runs has t = 2 on 2 degrees of freedom:
    p = 1 - 2 / sqrt(6) (the closed form of Student's t with 2 df); one 40 stds away is flagged."""
    runs = R.load_runs(RECORD)
    mig = [R.dig(runs[n]["metrics"]["dcign"], "disentanglement.mig_continuous") for n in SEEDS]
    mean, sd = float(np.mean(mig)), float(np.std(mig, ddof=1))
    metrics = json.loads(json.dumps(runs["c05-s1"]["metrics"]))
    metrics["dcign"]["disentanglement"]["mig_continuous"] = mean + 2 * np.sqrt(4 / 3) * sd
    body, ok, n = E.compare_table(metrics, runs, SEEDS)
    row = next(line for line in body.splitlines() if line.startswith("| continuous MIG | dcign |"))
    assert row.endswith(f"| +2.3 | {1 - 2 / np.sqrt(6):.2f} |") and ok == n
    metrics["dcign"]["disentanglement"]["mig_continuous"] = mean + 40 * sd
    body, ok, n = E.compare_table(metrics, runs, SEEDS)
    assert ok == n - 1 and "| continuous MIG | dcign |" in body.split("**< 0.05**")[0].splitlines()[-1]


def test_compare_command_errors_are_one_line(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    r = CliRunner().invoke(E.main, ["compare", str(bad), *SEEDS, "--runs", str(RECORD)])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {bad}: not a readable metrics file")
    bad.write_text(json.dumps({"baseline": {}}))
    r = CliRunner().invoke(E.main, ["compare", str(bad), *SEEDS, "--runs", str(RECORD)])
    assert r.exit_code == 1 and "no 'dcign' section" in r.output and len(r.output.strip().splitlines()) == 1
    good = tmp_path / "good.json"
    good.write_text(json.dumps(json.loads(RECORD.read_text())["c05-s2"]["metrics"]))
    r = CliRunner().invoke(E.main, ["compare", str(good), "c05-s1", "nope", "--runs", str(RECORD)])
    assert r.exit_code == 1 and r.output.strip() == "Error: not in the record: nope"
    r = CliRunner().invoke(E.main, ["compare", str(good), *SEEDS, "--runs", str(RECORD)])
    assert r.exit_code == 0 and r.output.rstrip().endswith("would be (p >= 0.05)")


FULL_S0 = RECORD.parent / "full-s0"  # the full profile's seed 0: params, evaluation and dvclive logs of its trainings


def _add(runs: Path, *extra: str, metrics: Path = FULL_S0 / "metrics.json"):
    args = ["add", "full-s0", "--params", str(FULL_S0 / "params.yaml"), "--metrics", str(metrics)]
    args += ["--train", f"dcign={FULL_S0 / 'dvclive-dcign'}", "--train", f"baseline={FULL_S0 / 'dvclive-baseline'}"]
    return CliRunner().invoke(E.main, [*args, "--runs", str(runs), *extra])


def test_add_records_a_hand_run_as_the_committed_record_has_it(tmp_path):
    """`dcign-experiments add` on the files of full-s0 (written by dcign-train and dcign-evaluate) gives the
    record's entry: the same fields as `collect` takes from `dvc exp show`, the training summaries included."""
    committed = json.loads(RECORD.read_text())["full-s0"]
    runs = tmp_path / "runs.json"
    r = _add(runs, "--rev", committed["rev"], "--timestamp", committed["timestamp"])
    assert r.exit_code == 0 and r.output.strip() == f"{runs}: added full-s0"
    assert json.loads(runs.read_text()) == {"full-s0": committed}
    assert committed["train"]["dcign"]["images_per_s"] > 100 and committed["params"]["train.decoder_steps"] == 6000
    assert set(committed) == set(json.loads(RECORD.read_text())["c09-fused-s0"])  # as collect writes a run
    r = _add(runs, "--rev", "x")  # a second time: said, not silent
    assert r.exit_code == 0 and r.output.strip() == f"{runs}: replaced full-s0"
    assert json.loads(runs.read_text())["full-s0"]["rev"] == "x"


def test_add_errors_name_the_file_or_option_and_write_nothing(tmp_path):
    runs = tmp_path / "runs.json"
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps({"baseline": {}}))
    r = _add(runs, metrics=bad)
    assert r.exit_code == 1 and r.output.strip() == f"Error: {bad}: no 'dcign' section (write it with dcign-evaluate)"
    r = _add(runs, metrics=tmp_path / "missing.json")
    assert r.exit_code == 1 and f"{tmp_path / 'missing.json'}: not a readable metrics file" in r.output
    r = _add(runs, "--train", "vae=somewhere")
    assert r.exit_code == 2 and "'--train'" in r.output and "dcign=DIR or baseline=DIR" in r.output
    r = _add(runs, "--timestamp", "yesterday")
    assert r.exit_code == 2 and "'--timestamp'" in r.output
    assert not runs.exists()


def test_profile_table_is_mean_and_sd_of_each_set_of_seeds():
    """Each cell of the full-profile table is its runs' mean ± sample std (one run: its value alone), and
    rows without a VAE figure (pixels, returning the input) leave that cell empty."""
    runs = R.load_runs(RECORD)
    default = ["c09-fused-s0", "c09-fused-s1", "c09-fused-s2", "c09-fused-s3"]
    full = ["full-s0"]
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in E.profile_table(runs, full, default).splitlines()[2:18]
    }
    psnr = [runs[n]["metrics"]["dcign"]["reconstruction"]["psnr"] for n in default]
    assert rows["reconstruction PSNR, dB (test sweeps)"][0] == f"{np.mean(psnr):.2f} ± {np.std(psnr, ddof=1):.2f}"
    assert (
        rows["reconstruction PSNR, dB (test sweeps)"][1]
        == f"{runs['full-s0']['metrics']['dcign']['reconstruction']['psnr']:.2f}"
    )
    edit = runs["full-s0"]["metrics"]["baseline"]["rerender"]["light"]["edit"]["identity"]
    assert rows["light edit: identity kept"][2] == f"{edit:.3f} |"
    assert rows["the same, raw pixels"][2] == " |" and rows["azimuth: identity kept by returning the input"][2] == " |"
    assert len(rows) == len(E.PROFILE_ROWS)
    # two seeds of the profile: a spread of its own
    two = E.profile_table({**runs, "full-s9": runs["c09-fused-s1"]}, ["full-s0", "full-s9"], default)
    assert "DC-IGN, full profile (2 seeds)" in two and "2 runs (full-s0, full-s9; seeds 0, 1;" in two
    with pytest.raises(E.ExperimentsError, match="not in the record: full-s8"):
        E.profile_table(runs, ["full-s8"], default)
