"""The tiny profile: params.yaml shrunk so that the whole pipeline runs in seconds."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "render": {
        "resolution": 16,
        "samples": 2,
        "batch_size": 4,
        "batches_per_shard": 2,
        "train_batches": {"azimuth": 2, "elevation": 2, "light": 2, "intrinsic": 2},
        "test_batches": {"azimuth": 1, "elevation": 1, "light": 1, "intrinsic": 1},
    },
    "train": {
        "filters": [4, 4, 4],
        "latent": 6,
        "steps": 6,
        "checkpoint_every": 3,
        "log_every": 1,
        "precision": "fp32",
        "init_std": 0.0,  # with He-initialised convs, a 6-step model's output still depends on its code
        "conv_init": "he",
    },
    "evaluate": {
        "grid": {"identities": 3, "azimuths": 3, "elevations": 2, "lights": 2},
        "recognition": {"identities": 4, "azimuths": 7},
        "score_samples": 40,
        "mig_samples": 50,
        "rerender_pairs": 6,
        "traversal_faces": 2,
        "bootstrap": 20,
        "mig_halves": 2,
        "dci_trees": 5,
    },
    "fit": {"images": 2, "budget": 4, "shape_components": 2, "albedo_components": 1},
}


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def tiny_params() -> dict:
    """params.yaml with the tiny profile merged in."""
    return merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)


def write_tiny_params(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(merge(tiny_params(), sections), sort_keys=False))
    return path
