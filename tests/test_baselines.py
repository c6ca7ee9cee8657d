"""dcign-baselines: the table of docs/baselines.md from the evaluation's own metrics files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import sweep_dirs
from tiny_profile import write_tiny_params

from pipeline.study import baselines as B
from render.params import get, load_params


def test_cell_is_mean_and_sample_std():
    assert B.cell([]) == "–"
    assert B.cell([0.5]) == "0.500"
    assert B.cell([0.1, 0.2, 0.3]) == f"{0.2:.3f} ± {np.std([0.1, 0.2, 0.3], ddof=1):.3f}"
    assert B.cell([24.0, 26.0]) == f"25.00 ± {np.std([24.0, 26.0], ddof=1):.2f}"


@pytest.mark.parametrize("spec", ["dcign", "dcign=dcign", "dcign=@a", "=dcign@a", "dcign=dcign@"])
def test_from_record_spec_is_checked(spec):
    with pytest.raises(B.BaselinesError, match="METHOD=MODEL@RUN"):
        B.parse_from_record((spec,))


def _layout(tmp_path: Path, eval_metrics: Path, seeds=(0, 1)) -> Path:
    """baselines/dcign-<seed>/eval/metrics.json as the evaluate stage writes it (copies of a real one)."""
    root = tmp_path / "baselines"
    for s in seeds:
        d = root / f"dcign-{s}" / "eval"
        d.mkdir(parents=True)
        shutil.copy(eval_metrics, d / "metrics.json")
    return root


def test_table_rows_are_the_evaluations_scores(tiny_eval, tmp_path):
    root, metrics = tiny_eval
    runs = _layout(tmp_path, root / "eval" / "metrics.json")
    params = write_tiny_params(tmp_path / "params.yaml", baselines={"methods": ["dcign"], "seeds": [0, 1]})
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- baselines:start -->\nold\n<!-- baselines:end -->\noutro\n")
    r = CliRunner().invoke(
        B.main,
        ["table", "--params", str(params), "--runs", str(runs), "--doc", str(doc), "--plot", str(tmp_path / "b.png")]
        + ["--speed", str(tmp_path / "none.json")],
    )
    assert r.exit_code == 0, r.output
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    row = next(line for line in text.splitlines() if line.startswith("| `dcign` |"))
    m = metrics["dcign"]
    mig = m["disentanglement"]["mig_continuous"]
    top1 = m["recognition"]["intrinsic"]["identification"]["top1"]
    edit = np.mean([m["rerender"][f]["edit"]["psnr"] for f in ("azimuth", "elevation", "light")])
    for v in (mig, top1):
        assert f"{v:.3f} ± 0.000" in row
    assert f"{edit:.2f} ± 0.00" in row and row.startswith("| `dcign` | 2 |")
    pixels = metrics["pixels"]["recognition"]["whole"]["identification"]["top1"]
    assert f"| {pixels:.3f} |" in next(line for line in text.splitlines() if line.startswith("| raw pixels"))
    assert (tmp_path / "b.png").stat().st_size > 0 and "dcign-0 (seed 0)" in text


def test_a_missing_run_or_a_wrong_method_is_one_line(tiny_eval, tmp_path):
    root, _ = tiny_eval
    runs = _layout(tmp_path, root / "eval" / "metrics.json", seeds=(0,))
    with pytest.raises(B.BaselinesError, match=r"dcign-1/eval/metrics.json: missing \(run `dvc repro"):
        B.runs_from_dir(runs, "dcign", [0, 1])
    shutil.copytree(runs / "dcign-0", runs / "baseline-0")
    with pytest.raises(B.BaselinesError, match="model 'baseline' was trained as 'vae'") as e:
        B.runs_from_dir(runs, "baseline", [0])
    assert "\n" not in str(e.value)


def test_speed_column_comes_from_the_benchmark_record(tiny_project, tmp_path):
    """benchmarks.methods trains each method through the real trainer; the table shows its images/s."""
    import subprocess
    import sys

    out = tmp_path / "methods.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.methods", "--params", str(tiny_project / "params.yaml")]
        + ["--data", str(tiny_project / "data" / "train"), "--steps", "2", "--methods", "dcign,factor_vae"]
        + ["--json", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    speed, where = B.load_speed(out)
    assert set(speed) == {"dcign", "factor_vae"} and all(v > 0 for v in speed.values())
    assert json.loads(out.read_text())["date"] in where


# --- the hyper-parameter sweep ---------------------------------------------------------------------------
def _trained_run(tiny_eval, run: Path, *sets: str) -> None:
    """<run>/dvclive (the trainer's own record, 2 steps) and <run>/eval/metrics.json (the evaluation's)."""
    from dcign.cli import main as train_cli

    root, _ = tiny_eval
    args = ["--params", str(root / "params.yaml"), "--out", str(run / "model"), "--live-dir", str(run / "dvclive")]
    args += ["--no-progress", "--set", "steps=2", "--set", "threads=1"] + [a for s in sets for a in ("--set", s)]
    args += [a for d in sweep_dirs(root, "train") for a in ("--data", str(d))]
    r = CliRunner().invoke(train_cli, args)
    assert r.exit_code == 0, r.output
    (run / "eval").mkdir(parents=True)
    shutil.copy(root / "eval" / "metrics.json", run / "eval" / "metrics.json")


def _with_baselines(path: Path, section: dict) -> Path:
    """The tiny profile with exactly this baselines section (merging would keep params.yaml's sweep)."""
    params = yaml.safe_load(write_tiny_params(path).read_text())
    params["baselines"] = section
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_sweep_table_lists_every_value_beside_the_default_run(tiny_eval, tmp_path):
    root, metrics = tiny_eval
    runs = tmp_path / "baselines"
    _trained_run(tiny_eval, runs / "dcign-0", "seed=0")
    _trained_run(tiny_eval, runs / "sweep" / "dcign-inv-3", "seed=0", "invariance=3")
    _trained_run(tiny_eval, runs / "sweep" / "dcign-inv-0.5", "seed=0", "invariance=0.5")
    sweep = {
        "dcign-inv-3": {"method": "dcign", "param": "invariance", "value": 3},
        "dcign-inv-0.5": {"method": "dcign", "param": "invariance", "value": 0.5},
    }
    section = {"methods": ["dcign"], "seeds": [0], "sweep_seed": 0, "sweep": sweep}
    params = _with_baselines(tmp_path / "params.yaml", section)
    default = get(load_params(params), "train.invariance", (int, float))
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- sweep:start -->\nold\n<!-- sweep:end -->\nb\n")
    args = ["sweep", "--params", str(params), "--runs", str(runs), "--doc", str(doc), "--plot", str(tmp_path / "s.png")]
    r = CliRunner().invoke(B.main, args)
    assert r.exit_code == 0, r.output
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| `dcign` |")]
    shown = [line.split(" | ")[2] for line in rows]
    assert shown == sorted(["0.5", "3", f"**{default:g}** (default)"], key=lambda s: float(s.strip("*").split("*")[0]))
    mig = metrics["dcign"]["disentanglement"]["mig_continuous"]
    assert all(f"| {mig:.3f} |" in line for line in rows)
    assert "old" not in doc.read_text() and (tmp_path / "s.png").stat().st_size > 0

    # a run whose own training record disagrees with the sweep is refused with one line
    sweep["dcign-inv-3"]["value"] = 4
    _with_baselines(params, section)
    r = CliRunner().invoke(B.main, args)
    assert r.exit_code != 0
    assert "dcign-inv-3/dvclive/params.yaml: trained with invariance=3.0, the sweep says 4.0" in r.output
    assert len(r.output.strip().splitlines()) == 1

    # a run trained with another setting besides the swept one (here the likelihood) is refused too
    sweep["dcign-inv-3"]["value"] = 3
    _with_baselines(params, section)
    shutil.rmtree(runs / "sweep" / "dcign-inv-0.5")
    _trained_run(tiny_eval, runs / "sweep" / "dcign-inv-0.5", "seed=0", "invariance=0.5", "recon=bernoulli")
    r = CliRunner().invoke(B.main, args)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert "dcign-inv-0.5/dvclive/params.yaml: trained with recon='bernoulli'" in r.output


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"method": "beta_vae", "param": "beta"}, r"baselines.sweep.x: expected \{method, param, value\}"),
        ({"method": "nope", "param": "beta", "value": 2}, "baselines.sweep.x: method 'nope' not in baselines.methods"),
        ({"method": "beta_vae", "param": "nope", "value": 2}, "baselines.sweep.x: .*train.nope is missing"),
        ({"method": "beta_vae", "param": "method", "value": 2}, "baselines.sweep.x: .*train.method must be a"),
        ({"method": "beta_vae", "param": "beta", "value": "2"}, "baselines.sweep.x: value '2' is not a number"),
    ],
)
def test_a_malformed_sweep_entry_is_one_line(entry, message, tmp_path):
    params = yaml.safe_load(write_tiny_params(tmp_path / "params.yaml").read_text())
    params["baselines"] = {"methods": ["beta_vae"], "seeds": [0], "sweep_seed": 0, "sweep": {"x": entry}}
    with pytest.raises(B.BaselinesError, match=message) as e:
        B.sweep_points(params, tmp_path / "baselines")
    assert "\n" not in str(e.value)
