"""The shipped params files are complete and valid for every stage's reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcign.config import load_config
from pipeline.evaluate import config_from_params
from pipeline.params import load_params
from render.cli import job_from_options
from render.shards import SWEEPS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["params.yaml", "params-paper.yaml"])
def test_params_file_is_valid_for_every_stage(name):
    path = ROOT / name
    for split in ("train", "test"):
        for sweep in ("azimuth", "elevation", "light", "intrinsic"):
            job = job_from_options(path, split, sweep, None, {})
            assert job.sweep in SWEEPS and job.n_batches > 0
    grid = job_from_options(path, "test", "grid", None, {})
    assert grid.sweep_cfg.batch_size == grid.sweep_cfg.grid[1]
    recog = job_from_options(path, "test", "recognition", None, {})
    assert recog.sweep_cfg.batch_size == recog.sweep_cfg.recognition[1] and recog.n_batches >= 4
    cfg = load_config(path)
    assert cfg.steps > 0 and cfg.method == "dcign" and not cfg.entangled
    assert config_from_params(load_params(path)).encode_batch > 0


def test_paper_profile_is_paper_scale():
    p = load_params(ROOT / "params-paper.yaml")
    assert p["render"]["resolution"] == 150 and p["render"]["batch_size"] == 20
    assert 11_000 <= sum(p["render"]["train_batches"].values()) <= 13_000
    assert p["train"]["latent"] == 200 and p["train"]["filters"] == [96, 64, 32]
