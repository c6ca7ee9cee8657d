"""The bookkeeping of a sweep directory while it renders: sidecars, what is done, the manifest.

Every shard written gets a sidecar ``shard-k.json`` (checksum, batch range, job config); the
manifest is rebuilt from them after each shard. A rerun scans the sidecars, keeps the shards
whose checksum matches and renders the rest; a directory rendered with another config is refused.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from render import shards
from render.atomic import atomic_write_json, claim_blender_session
from render.job import RenderJob
from render.shards import ShardError


def software_versions() -> dict:
    import bpy  # only workers and this record need Blender

    claim_blender_session(bpy.app.tempdir)
    return {"python": platform.python_version(), "blender": bpy.app.version_string, "numpy": np.__version__}


def sidecar(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / shards.shard_name(k).replace(".npz", ".json")


def scan(out_dir: Path, job: RenderJob, config: dict) -> tuple[dict, list[int]]:
    """Verified shard entries present in ``out_dir`` and the indices of corrupt ones."""
    manifest = shards.read_manifest(out_dir)
    if manifest is not None and manifest.get("config") != config:
        raise ShardError(
            f"{out_dir / shards.MANIFEST}: rendered with different params; delete the directory or use another --out"
        )
    done, corrupt = {}, []
    for k in range(job.n_shards):
        entry = _verified(out_dir, k, config)
        if entry is not None:
            done[shards.shard_name(k)] = entry
        elif sidecar(out_dir, k).exists():
            corrupt.append(k)
    return done, corrupt


def _verified(out_dir: Path, k: int, config: dict) -> dict | None:
    """Shard ``k``'s manifest entry if its sidecar and shard are whole; None if either is missing or corrupt."""
    side = sidecar(out_dir, k)
    if not side.exists():
        return None
    try:
        entry = shards.read_json_object(side, "shard sidecar")
    except ShardError:  # a torn or foreign sidecar: the shard is rendered again
        return None
    if entry.get("config") != config:
        raise ShardError(f"{side}: rendered with different params; delete the directory or use another --out")
    try:
        shards.check_entry(side, "sidecar", entry)
    except ShardError:
        return None
    if not shards.verify_shard(out_dir, shards.shard_name(k), entry):
        return None
    return {"sha256": entry["sha256"], "batches": entry["batches"]}


def adopt_finished(out_dir: Path, job: RenderJob, config: dict, done: dict) -> None:
    """Add to ``done`` the shards that another process (another ``--shard`` part) finished meanwhile."""
    for k in range(job.n_shards):
        name = shards.shard_name(k)
        if name not in done and (entry := _verified(out_dir, k, config)) is not None:
            done[name] = entry


def record_shard(out_dir: Path, job: RenderJob, k: int, digest: str, config: dict) -> dict:
    """Write shard ``k``'s sidecar; return its manifest entry."""
    batches = [job.shard_batches(k).start, job.shard_batches(k).stop]
    atomic_write_json(sidecar(out_dir, k), {"sha256": digest, "batches": batches, "config": config})
    return {"sha256": digest, "batches": batches}


def write_manifest(out_dir: Path, job: RenderJob, config: dict, done: dict, versions: dict) -> None:
    atomic_write_json(
        Path(out_dir) / shards.MANIFEST,
        {
            "format": shards.FORMAT,
            "sweep": job.sweep,
            "n_shards": job.n_shards,
            "n_batches": job.n_batches,
            "complete": len(done) == job.n_shards,
            "config": config,
            "versions": versions,
            "shards": dict(sorted(done.items())),
        },
    )
