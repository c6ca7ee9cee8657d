"""Dataset shards: the on-disk format that ``render/`` writes and ``dcign/`` reads.

A sweep's output directory holds ``manifest.json`` and shards ``shard-XXXXX.npz``
(uncompressed, so ``np.load`` is a plain read). Shard ``k`` holds render batches
``[k * batches_per_shard, (k + 1) * batches_per_shard)``; its contents are a pure
function of (seed, sweep, batch index) and the render params, so any worker or
machine count produces the same bytes.

Shard arrays (n = batches in the shard, B = images per batch, R = resolution):

- ``images``      uint8 (n, B, R, R) greyscale, or (n, B, R, R, 3) RGB
- ``azimuth``     float32 (n, B) camera azimuth, degrees (0 = frontal, + = camera to the face's left)
- ``elevation``   float32 (n, B) camera elevation, degrees (+ = camera above)
- ``light``       float32 (n, B) light azimuth in the camera frame, degrees
- ``identity``    int64 (n, B) identity index (unique per drawn face)
- ``shape``       float32 (n, B, Ks) shape coefficients (units of std)
- ``albedo``      float32 (n, B, Ka) albedo coefficients (units of std)
- ``batch_index`` int64 (n,) global batch index within the sweep
- ``sweep``       str scalar, the sweep type (same for every batch in a directory)

The manifest records format version, sweep, params, software versions and, per
shard, its batch range and SHA-256, so corrupted or foreign shards are detected.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.atomic import atomic_write_bytes, sha256_bytes, sha256_file
from render.text import printable

FORMAT = "dcign-shards/1"
MANIFEST = "manifest.json"


class ShardError(ValueError):
    """A dataset directory or shard is missing, corrupt or inconsistent."""


_SHARD_NAME = re.compile(r"shard-\d{5}\.npz")
MAX_SHARDS = 100_000  # shard names have five digits, and sorting the names must sort the batches


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.npz"


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write one shard atomically; return its SHA-256."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold an object; ShardError naming the file otherwise.

    A file edited by hand, or another tool's, may hold any JSON: a list or a number would
    otherwise fail later as an AttributeError far from the file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ShardError(f"{path}: unreadable {what} ({first})") from None
    if not isinstance(data, dict):
        raise ShardError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def check_entry(path: Path, name: str, entry) -> dict:
    """A shard's record (in the manifest or its sidecar): ``sha256`` and a ``[start, stop)`` batch range."""
    batches = entry.get("batches") if isinstance(entry, dict) else None
    ok = (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(batches, list)
        and len(batches) == 2
        and all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in batches)
        and batches[0] < batches[1]
    )
    if not ok:
        raise ShardError(f"{path}: {name} must be an object with sha256 and batches [start, stop), got {entry!r:.80}")
    return entry


def read_manifest(directory: Path) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    manifest = read_json_object(path, "manifest")
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: not a {FORMAT} manifest (format={manifest.get('format')!r:.40})")
    entries = manifest.get("shards", {})
    if not isinstance(entries, dict):
        raise ShardError(f"{path}: shards must be an object of shard entries, got {type(entries).__name__}")
    for name, entry in entries.items():
        if not _SHARD_NAME.fullmatch(name):
            raise ShardError(f"{path}: shards has an entry {name!r:.40} that is not a shard-NNNNN.npz name")
        check_entry(path, f"shards.{name}", entry)
    n = manifest.get("n_shards")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ShardError(f"{path}: n_shards must be a non-negative integer, got {n!r:.40}")
    return manifest


def verify_shard(directory: Path, name: str, entry: dict) -> bool:
    """True when the shard exists and its checksum matches the manifest."""
    path = Path(directory) / name
    return path.exists() and sha256_file(path) == entry.get("sha256")


def load_shard(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ShardError(f"{path}: unreadable shard ({printable(e)})") from None


@dataclass
class RenderedDataset:
    """All batches of one or more sweep directories, loaded once into memory."""

    images: np.ndarray  # (N, B, R, R) or (N, B, R, R, 3) uint8
    sweep: np.ndarray  # (N,) str, the sweep type of each batch
    azimuth: np.ndarray  # (N, B) float32 degrees
    elevation: np.ndarray  # (N, B) float32 degrees
    light: np.ndarray  # (N, B) float32 degrees
    identity: np.ndarray  # (N, B) int64
    shape: np.ndarray  # (N, B, Ks) float32
    albedo: np.ndarray  # (N, B, Ka) float32

    @property
    def n_batches(self) -> int:
        return int(self.images.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[2])

    def factor(self, name: str) -> np.ndarray:
        return getattr(self, name)


def load_sweep_dir(directory: Path, verify: bool = True) -> dict[str, np.ndarray]:
    """Load every shard listed in a sweep directory's manifest, in batch order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError(f"{directory}: dataset directory does not exist")
    manifest = read_manifest(directory)
    if manifest is None:
        raise ShardError(f"{directory}: no {MANIFEST} (not a rendered dataset, or rendering never finished)")
    entries = manifest.get("shards", {})
    expected = manifest.get("n_shards")
    if not entries or (expected is not None and len(entries) != expected):
        raise ShardError(f"{directory}: incomplete dataset ({len(entries)} of {expected} shards); rerun the render")
    parts = []
    for name in sorted(entries):
        if verify and not verify_shard(directory, name, entries[name]):
            raise ShardError(f"{directory / name}: missing or checksum mismatch; rerun the render to repair it")
        parts.append(load_shard(directory / name))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "sweep"}
    out["sweep"] = np.array([str(parts[0]["sweep"])] * out["images"].shape[0])
    return out


def load_dataset(directories: list[Path] | Path, verify: bool = True) -> RenderedDataset:
    """Load and concatenate sweep directories (e.g. one per sweep type)."""
    if isinstance(directories, (str, Path)):
        directories = [directories]
    if not directories:
        raise ShardError("no dataset directories given")
    parts = [load_sweep_dir(Path(d), verify=verify) for d in directories]
    shapes = {p["images"].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ShardError(f"dataset directories disagree on image/batch shape: {sorted(shapes)}")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return RenderedDataset(
        images=cat["images"],
        sweep=cat["sweep"],
        azimuth=cat["azimuth"],
        elevation=cat["elevation"],
        light=cat["light"],
        identity=cat["identity"],
        shape=cat["shape"],
        albedo=cat["albedo"],
    )
