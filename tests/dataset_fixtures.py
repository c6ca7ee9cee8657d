"""Tiny synthetic rendered datasets in the real shard format (no Blender).

Each image is a grey blob on black: its x-position follows azimuth, its y-position
elevation, the side it is lit from the light azimuth, its size and brightness the identity.
Within a batch only the sweep's variable changes, as in the real renders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.atomic import atomic_write_json
from render.shards import FORMAT, MANIFEST, shard_name, write_shard

RANGES = {"azimuth": 80.0, "elevation": 20.0, "light": 80.0}  # +- degrees
N_COEFF = 4  # shape / albedo coefficients per identity


def fake_images(azimuth, elevation, light, identity, resolution: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, R, R) blobs for per-image factors (degrees) and identities (ints)."""
    r = resolution
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) / (r - 1) * 2 - 1  # (R, R) in [-1, 1]
    az, el, li = (np.asarray(v, np.float32)[:, None, None] for v in (azimuth, elevation, light))
    ident = np.asarray(identity)
    rng = np.random.default_rng([seed, 7])
    scale = rng.uniform(0.8, 1.25, size=int(ident.max()) + 1)[ident][:, None, None].astype(np.float32)
    cx, cy = 0.6 * az / RANGES["azimuth"], -0.6 * el / RANGES["elevation"]
    size = 0.3 * scale
    blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * size**2))
    shade = 0.6 + 0.4 * np.clip((xx - cx) * np.sin(np.radians(li)) / size, -1, 1)
    return np.clip(255 * blob * shade * (0.7 + 0.3 * (scale - 0.8) / 0.45), 0, 255).astype(np.uint8)


def make_fake_dataset(
    root: Path,
    sweeps: tuple[str, ...] = ("azimuth", "elevation", "light", "intrinsic"),
    n_batches: int = 4,
    batch_size: int = 8,
    resolution: int = 16,
    seed: int = 0,
    batches_per_shard: int = 2,
) -> list[Path]:
    """Write one sweep directory per entry of ``sweeps`` under ``root``; return them in order."""
    dirs = []
    for s_i, sweep in enumerate(sweeps):
        rng = np.random.default_rng([seed, s_i])
        n, b = n_batches, batch_size
        factors = {f: rng.uniform(-lim, lim, size=(n, 1)).repeat(b, 1) for f, lim in RANGES.items()}
        identity = np.repeat(rng.integers(0, 1000, size=(n, 1)), b, axis=1)
        if sweep in RANGES:  # this factor sweeps evenly across the batch
            lim = RANGES[sweep]
            factors[sweep] = np.tile(np.linspace(-lim, lim, b), (n, 1)) + rng.uniform(-1, 1, size=(n, 1))
        else:  # shape / texture / intrinsic: a different face per image
            identity = rng.integers(0, 1000, size=(n, b))
        factors = {f: v.astype(np.float32) for f, v in factors.items()}
        images = fake_images(
            factors["azimuth"].ravel(),
            factors["elevation"].ravel(),
            factors["light"].ravel(),
            identity.ravel(),
            resolution,
            seed,
        ).reshape(n, b, resolution, resolution)
        coeff = np.random.default_rng([seed, 11]).standard_normal((1000, 2, N_COEFF)).astype(np.float32)

        directory = Path(root) / sweep
        directory.mkdir(parents=True, exist_ok=True)
        shards = {}
        for k, start in enumerate(range(0, n, batches_per_shard)):
            stop = min(n, start + batches_per_shard)
            sl = slice(start, stop)
            arrays = {
                "images": images[sl],
                **{f: factors[f][sl] for f in RANGES},
                "identity": identity[sl].astype(np.int64),
                "shape": coeff[identity[sl], 0],
                "albedo": coeff[identity[sl], 1],
                "batch_index": np.arange(start, stop, dtype=np.int64),
                "sweep": np.array(sweep),
            }
            shards[shard_name(k)] = {"sha256": write_shard(directory / shard_name(k), arrays), "batches": [start, stop]}
        atomic_write_json(
            directory / MANIFEST,
            {
                "format": FORMAT,
                "sweep": sweep,
                "n_shards": len(shards),
                "shards": shards,
                "params": {"n_batches": n, "batch_size": b, "resolution": resolution, "seed": seed, "fake": True},
            },
        )
        dirs.append(directory)
    return dirs
