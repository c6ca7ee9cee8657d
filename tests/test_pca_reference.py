"""pipeline.study.pca_reference: the linear (PCA) reconstruction reference of docs/experiments.md."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from conftest import sweep_dirs

from pipeline.study.pca_reference import main, pca_psnr


def test_pca_of_rank_r_data_reconstructs_its_span_exactly_and_improves_with_k():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 50))
    train = 0.5 + 0.05 * rng.normal(size=(200, 3)) @ basis  # rank 3 around a mean
    test = 0.5 + 0.05 * rng.normal(size=(40, 3)) @ basis
    res = pca_psnr(train, test, [1, 2, 3])
    psnrs = [res["k"][k]["test"] for k in (1, 2, 3)]
    assert psnrs[0] < psnrs[1] < psnrs[2] and psnrs[2] > 100  # the third component closes the span
    assert abs(res["k"][3]["variance"] - 1.0) < 1e-9
    mse = np.mean((test - train.mean(0)) ** 2)
    assert abs(res["mean_image"] - 10 * np.log10(1 / mse)) < 1e-6


def test_cli_reads_rendered_shards_and_writes_the_record(tiny_project, tmp_path):
    args = [a for d in sweep_dirs(tiny_project, "train") for a in ("--train", str(d))]
    args += [a for d in sweep_dirs(tiny_project, "test") for a in ("--test", str(d))]
    out = tmp_path / "pca.json"
    r = CliRunner().invoke(main, args + ["--k", "1", "--k", "4", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())
    assert rec["k"]["4"]["train"] > rec["k"]["1"]["train"]
    assert rec["k"]["1"]["test"] >= rec["mean_image"] - 1e-9  # a projection through the mean never hurts
    r = CliRunner().invoke(main, ["--train", str(tmp_path / "nope"), "--test", str(tmp_path)])
    assert r.exit_code != 0 and "--train:" in r.output and "does not exist" in r.output
