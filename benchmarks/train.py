"""Training throughput of the DC-IGN against this machine's matrix-multiply peak.

Measures, in one run: the fp32 (and bf16) torch.mm peak in GFLOP/s, then training images/s
of the network (default: paper size, filters 96,64,32, 200 latents) at each resolution and
precision, using the real training step (dcign.train.train_step: clamped forward, backward,
Adam update, channels_last). FLOPs per image are counted with FlopCounterMode on one
forward pass (convolutions and matmuls) and tripled for training (forward + 2x backward).
Side by side, each configuration is timed again with the decoder's fused upsampling
(dcign.model.UpsampleConv2d, one transposed convolution) replaced by what it computes,
nearest-neighbour upsampling then the 7x7 convolution: ``upsample_speedup`` is the ratio.

    python -m benchmarks.train --seconds 10
    python -m benchmarks.train --filters 32,32,32 --latent 32 --resolutions 32,64 --seconds 5

``--json FILE`` writes every figure printed, with the machine, the device and the date.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

# Run as a script, benchmarks/ would come first on sys.path and its render.py would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import click  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks import record  # noqa: E402
from dcign.config import ModelConfig, TrainConfig  # noqa: E402
from dcign.model import DCIGN, UpsampleConv2d  # noqa: E402
from dcign.train import make_optimizer, resolve_device, train_step  # noqa: E402

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn, flops: float, device: torch.device, seconds: float) -> float:
    """Best GFLOP/s of ``fn`` over short timed rounds."""
    fn()
    sync(device)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        reps, t0 = 3, time.perf_counter()
        for _ in range(reps):
            fn()
        sync(device)
        best = max(best, reps * flops / (time.perf_counter() - t0) / 1e9)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> dict[str, float]:
    """GFLOP/s of an n x n x n GEMM through torch.mm and, as a 1x1 convolution, through oneDNN/cuDNN.

    On AMD CPUs torch.mm in fp32 goes to MKL, which does not use AVX-512 there, while the
    convolutions run on oneDNN: the 1x1-conv GEMM is the attainable peak for this network.
    """
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    side = int(n**0.5)  # n pixels x n channels -> n channels: the same n^3 GEMM
    x = torch.randn(1, n, side, n // side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * n * (side * (n // side)) * n
    return {
        "torch.mm": _best_rate(lambda: torch.mm(a, b), 2 * n**3, device, seconds / 2),
        "conv1x1": _best_rate(lambda: F.conv2d(x, w), flops, device, seconds / 2),
    }


def forward_flops(model: DCIGN, resolution: int) -> float:
    x = torch.rand(2, 1, resolution, resolution, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model(x, active="azimuth")
    return counter.get_total_flops() / 2


def train_rate(cfg: TrainConfig, batch: int, device: torch.device, seconds: float) -> tuple[float, int]:
    """Training images/s over at least 2 timed steps after 1 warm-up step."""
    torch.manual_seed(0)
    model = DCIGN(cfg.model).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    r = cfg.model.resolution
    x = torch.rand(batch, 1, r, r, device=device).contiguous(memory_format=torch.channels_last)
    eps = torch.randn(batch, cfg.model.latent, device=device)
    batches = [(x, eps, "azimuth", None, None)]  # dcign.train.Batch: no permutation, no edit partners
    train_step(model, optimizer, batches, cfg)  # warm-up (allocator, oneDNN/cuDNN kernel choice)
    sync(device)
    steps, t0 = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - t0 < seconds:
        train_step(model, optimizer, batches, cfg)
        steps += 1
    sync(device)
    return steps * batch / (time.perf_counter() - t0), steps


def _upsample_then_conv(layer: UpsampleConv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), layer.weight, layer.bias, padding=layer.padding)


def unfused_upsampling() -> contextlib.AbstractContextManager:
    """Within it the decoder upsamples, then convolves: the layer's reference formulation."""
    return mock.patch.object(UpsampleConv2d, "forward", _upsample_then_conv)


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="Timed seconds per configuration (>= 2 steps).")
@click.option("--filters", default="96,64,32", show_default=True, help="Encoder filters.")
@click.option("--latent", default=200, show_default=True)
@click.option("--resolutions", default="64,150", show_default=True)
@click.option("--precisions", default="fp32,bf16", show_default=True)
@click.option("--batch", default=20, show_default=True, help="Images per step (one render batch).")
@click.option("--device", "device_name", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--threads", default=0, help="torch CPU threads (0: torch default).")
@click.option("--mm-size", default=2048, show_default=True, help="Side of the square matrices for the peak.")
@click.option(
    "--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write every figure here."
)
def main(seconds, filters, latent, resolutions, precisions, batch, device_name, threads, mm_size, json_path):
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    filters = tuple(int(f) for f in filters.split(","))
    gemm = {p: matmul_peak(device, d, mm_size, min(seconds, 4)) for p, d in PRECISIONS.items()}
    peak = {p: max(g.values()) for p, g in gemm.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    click.echo(f"device {name}; GEMM {mm_size}^3 GFLOP/s (peak = the faster path):")
    for p, g in gemm.items():
        click.echo(f"  {p}: " + ", ".join(f"{k} {v:.0f}" for k, v in g.items()) + f" -> peak {peak[p]:.0f}")
    click.echo(f"network filters={','.join(map(str, filters))} latent={latent} batch={batch}")
    click.echo(
        f"{'res':>4} {'prec':>5} {'GFLOP/img':>10} {'img/s':>8} {'GFLOP/s':>8} {'%fp32pk':>8} {'%ownpk':>7} "
        f"{'unfused':>8} {'fused/unf':>9}"
    )
    rows, speedups = [], {}
    for r in (int(v) for v in resolutions.split(",")):
        rate_by_prec = {}
        for prec in precisions.split(","):
            cfg = TrainConfig(precision=prec, model=ModelConfig(resolution=r, filters=filters, latent=latent))
            flops = 3 * forward_flops(DCIGN(cfg.model).to(device), r)
            rate, steps = train_rate(cfg, batch, device, seconds)
            with unfused_upsampling():
                rate_unfused, _ = train_rate(cfg, batch, device, seconds)
            achieved = rate * flops / 1e9
            rate_by_prec[prec] = rate
            row = {
                "resolution": r,
                "precision": prec,
                "train_gflop_per_image": flops / 1e9,
                "images_per_s": rate,
                "images_per_s_upsample_then_conv": rate_unfused,
                "upsample_speedup": rate / rate_unfused,
                "gflop_per_s": achieved,
                "fraction_of_fp32_peak": achieved / peak["fp32"],
                "fraction_of_own_peak": achieved / peak[prec],
                "steps": steps,
            }
            rows.append(row)
            click.echo(
                f"{r:>4} {prec:>5} {flops / 1e9:>10.3f} {rate:>8.1f} {achieved:>8.1f} "
                f"{100 * row['fraction_of_fp32_peak']:>7.1f}% {100 * row['fraction_of_own_peak']:>6.1f}% "
                f"{rate_unfused:>8.1f} {row['upsample_speedup']:>8.2f}x"
            )
        if "fp32" in rate_by_prec and "bf16" in rate_by_prec:
            speedups[r] = rate_by_prec["bf16"] / rate_by_prec["fp32"]
            click.echo(f"{r:>4} bf16/fp32 speed-up {speedups[r]:.2f}x")
    if json_path:
        settings = {
            "seconds": seconds,
            "filters": list(filters),
            "latent": latent,
            "resolutions": [int(v) for v in resolutions.split(",")],
            "precisions": precisions.split(","),
            "batch": batch,
            "threads": torch.get_num_threads(),
            "mm_size": mm_size,
        }
        results = {
            "gemm_gflop_per_s": gemm,
            "matmul_peak_gflop_per_s": peak,
            "rows": rows,
            "bf16_over_fp32": {str(r): v for r, v in speedups.items()},
        }
        record.write(json_path, "train", settings, results, device=name, torch=torch.__version__)


if __name__ == "__main__":
    main()
