"""The GPU check behind docs/benchmarks.md's "On a GPU" section: training, resume and encoding on CUDA.

    python -m benchmarks.cuda_check [--seconds 10] [--json FILE]

On synthetic shards (random images in the real shard format, so no Blender is needed):

1. fp32 training, 5 steps on the CPU and on CUDA: the loss after the 5th step on each, and
   their relative difference;
2. bf16 training on CUDA: the losses are finite;
3. checkpoint and resume on CUDA: 3 steps, then resumed to 6, against 6 straight: the weights
   are bit-identical;
4. encoding on CUDA against encoding on the CPU: the largest difference of the latent means;
5. throughput of the paper-size network (filters 96, 64, 32; 200 latents) at 150x150 with
   batches of 20, fp32 and bf16 (the timed training steps of ``benchmarks.train``).

Without a CUDA device it says so and exits with status 1. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks import record
from benchmarks.train import train_rate
from dcign.checkpoint import load_model
from dcign.config import ModelConfig, TrainConfig
from dcign.train import train
from pipeline.evaluation.encode import encode
from render.atomic import atomic_write_json
from render.shards import FORMAT, MANIFEST, load_dataset, shard_name, write_shard
from render.vocabulary import FACTORS

SWEEPS = ("azimuth", "elevation", "light", "intrinsic")
PAPER = {"resolution": 150, "filters": (96, 64, 32), "latent": 200}
BATCH = 20
LOSS_TOLERANCE = 1e-3  # relative, fp32 CPU against CUDA: a different summation order, not a different result


def synthetic_dataset(root: Path, resolution: int, n_batches: int = 4, seed: int = 0) -> list[Path]:
    """One sweep directory per training sweep type: random images and factors, one shard each."""
    rng = np.random.default_rng(seed)
    dirs = []
    for i, sweep in enumerate(SWEEPS):
        n, b = n_batches, BATCH
        arrays = {
            "images": rng.integers(0, 256, (n, b, resolution, resolution), dtype=np.uint8),
            **{f: rng.uniform(-90, 90, (n, b)).astype(np.float32) for f in FACTORS},
            "identity": np.full((n, b), i, np.int64),
            "shape": np.zeros((n, b, 1), np.float32),
            "albedo": np.zeros((n, b, 1), np.float32),
            "batch_index": np.arange(n, dtype=np.int64),
            "sweep": np.array(sweep),
        }
        directory = root / sweep
        directory.mkdir(parents=True)
        digest = write_shard(directory / shard_name(0), arrays)
        atomic_write_json(
            directory / MANIFEST,
            {
                "format": FORMAT,
                "sweep": sweep,
                "n_shards": 1,
                "n_batches": n,
                "complete": True,
                "shards": {shard_name(0): {"sha256": digest, "batches": [0, n]}},
            },
        )
        dirs.append(directory)
    return dirs


def last_loss(live_dir: Path) -> float:
    """The loss of the last step dvclive logged (its ``plots/metrics/train/loss.tsv``)."""
    header, *rows = (Path(live_dir) / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    return float(rows[-1].split("\t")[header.split("\t").index("loss")])


def run_checks(
    device: str,
    work: Path,
    resolution: int = 64,
    filters: tuple[int, ...] = (32, 32, 32),
    latent: int = 32,
    throughput: dict | None = None,
    seconds: float = 10.0,
) -> dict:
    """Every check on ``device`` against the CPU; the throughput network is ``throughput`` (default: PAPER)."""
    work = Path(work)
    data = synthetic_dataset(work / "data", resolution)
    model_cfg = ModelConfig(resolution=resolution, filters=filters, latent=latent)
    base = TrainConfig(steps=5, checkpoint_every=5, log_every=1, precision="fp32", device=device, model=model_cfg)
    out: dict = {"device": device}

    train(replace(base, device="cpu"), data, work / "cpu", live_dir=work / "live-cpu")
    train(base, data, work / "fp32", live_dir=work / "live-fp32")
    cpu, gpu = last_loss(work / "live-cpu"), last_loss(work / "live-fp32")
    out["fp32_loss_after_5_steps"] = {"cpu": cpu, device: gpu}
    out["fp32_relative_difference"] = abs(gpu - cpu) / abs(cpu)

    bf16 = train(replace(base, precision="bf16"), data, work / "bf16")
    out["bf16_mean_loss"] = bf16["final_loss"]
    out["bf16_finite"] = all(math.isfinite(bf16[f"final_{t}"]) for t in ("loss", "recon", "kl"))

    train(replace(base, steps=6, checkpoint_every=3), data, work / "straight")
    train(replace(base, steps=3, checkpoint_every=3), data, work / "resumed")
    train(replace(base, steps=6, checkpoint_every=3), data, work / "resumed", resume=True)
    a, b = (load_model(work / name)[0].state_dict() for name in ("straight", "resumed"))
    out["resume_bit_identical"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    images = load_dataset(data[:1]).images[0]  # (B, R, R) uint8
    mu_device, _ = encode(load_model(work / "fp32", map_location=device)[0], images)
    mu_cpu, _ = encode(load_model(work / "fp32")[0], images)
    out["encode_max_abs_difference"] = float(np.abs(mu_device - mu_cpu).max())

    net = throughput or PAPER
    out["throughput"] = {"batch": BATCH, **{k: list(v) if k == "filters" else v for k, v in net.items()}}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(precision=precision, device=device, model=ModelConfig(**net))
        rate, steps = train_rate(cfg, BATCH, torch.device(device), seconds)
        out["throughput"][f"{precision}_images_per_s"] = rate
    out["passed"] = bool(
        out["fp32_relative_difference"] < LOSS_TOLERANCE and out["bf16_finite"] and out["resume_bit_identical"]
    )
    return out


def report(r: dict) -> list[str]:
    d, t = r["device"], r["throughput"]
    return [
        f"fp32, loss after 5 steps: {r['fp32_loss_after_5_steps']['cpu']:.6g} (cpu), "
        f"{r['fp32_loss_after_5_steps'][d]:.6g} ({d}), "
        f"relative difference {r['fp32_relative_difference']:.1e} (tolerance {LOSS_TOLERANCE:g})",
        f"bf16, 5 steps on {d}: mean loss {r['bf16_mean_loss']:.6g}, {'finite' if r['bf16_finite'] else 'NOT FINITE'}",
        f"checkpoint + resume on {d}: weights {'bit-identical' if r['resume_bit_identical'] else 'DIFFER'}",
        f"encode on {d} vs cpu: largest difference of the latent means {r['encode_max_abs_difference']:.1e}",
        f"throughput at {t['resolution']}x{t['resolution']}, filters {t['filters']}, {t['latent']} latents, "
        f"batch {t['batch']}: {t['fp32_images_per_s']:.0f} img/s fp32, {t['bf16_images_per_s']:.0f} img/s bf16",
        "all checks passed" if r["passed"] else "SOME CHECKS FAILED",
    ]


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="Timed seconds per throughput measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write every figure here.")
def main(seconds, json_path):
    """Check training, resume and encoding on CUDA against the CPU, and measure throughput."""
    if not torch.cuda.is_available():
        sys.exit("benchmarks.cuda_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU")
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # dvclive looks at the repository around the working directory: here, none
        try:
            results = run_checks("cuda", Path(tmp), seconds=seconds)
        finally:
            os.chdir(home)
    name = torch.cuda.get_device_name(0)
    click.echo(f"{name}, torch {torch.__version__} (CUDA {torch.version.cuda}), numpy {np.__version__}")
    for line in report(results):
        click.echo(line)
    if json_path:
        extra = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}
        record.write(json_path, "cuda_check", {"seconds": seconds}, results, **extra)
    sys.exit(0 if results["passed"] else 1)


if __name__ == "__main__":
    main()
