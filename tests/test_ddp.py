"""DDP: two CPU processes (gloo, torchrun on 127.0.0.1) equal one process taking both batches per step."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from dataset_fixtures import make_fake_dataset

from dcign.checkpoint import load_model
from dcign.config import ModelConfig, TrainConfig, default_params
from dcign.train import train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["dcign", "factor_vae", "ada_gvae"])  # plus a discriminator; pairs
def test_two_ranks_equal_one_process_with_two_batches_per_step(tmp_path, method):
    data = make_fake_dataset(tmp_path / "data", n_batches=3, batch_size=4, resolution=16)
    cfg = TrainConfig(
        steps=4,
        checkpoint_every=2,
        log_every=1,
        precision="fp32",
        threads=1,  # as each rank: the single process's sums must not depend on how many cores this test finds
        method=method,
        factor_hidden=16,
        factor_layers=3,
        model=ModelConfig(filters=(4, 4, 4), latent=8),
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params(cfg)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # the rendezvous binds a port the system picks: no race for a free one
        "--nproc_per_node",
        "2",
        "-m",
        "dcign.cli",
        "--params",
        str(tmp_path / "params.yaml"),
        "--no-progress",
        "--out",
        str(tmp_path / "ddp"),
        "--live-dir",
        str(tmp_path / "live"),
        *[a for d in data for a in ("--data", str(d))],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    threads = torch.get_num_threads()
    try:
        single = train(replace(cfg, batches_per_step=2), data, tmp_path / "single")
    finally:
        torch.set_num_threads(threads)  # train() set one thread for this process: not for the tests after it
    ddp_model, _, info = load_model(tmp_path / "ddp")
    assert info["step"] == 4 and info["world_size"] == 2 and info["slots_per_step"] == 2
    one = load_model(tmp_path / "single")[0].state_dict()
    for k, v in ddp_model.state_dict().items():
        assert torch.allclose(v, one[k], rtol=1e-4, atol=1e-6), k
    # rank 0 logged the all-reduced loss of the global batch, the same as the single process
    last = json.loads((tmp_path / "live/metrics.json").read_text())
    assert last["step"] == 4 and last["world_size"] == 2
    assert abs(info["summary"]["final_loss"] - single["final_loss"]) < 1e-3 * abs(single["final_loss"])
