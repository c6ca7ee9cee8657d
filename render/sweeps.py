"""One-variable sweeps: the scene variables of every image in a render batch.

In a batch of B images exactly the swept variable changes; every other
variable is drawn once per batch and held fixed. Swept angles are stratified:
the range is cut into B equal strata, one uniform draw per stratum, in
increasing order, so every batch covers the whole range. A batch is a pure
function of (seed, sweep, batch index): its generator is seeded by those three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from render.vocabulary import ALL_SWEEPS, GRID, RECOGNITION

# Paper ranges (degrees): azimuth about ±90, elevation about ±23, light azimuth about ±80.
DEFAULT_RANGES = {"azimuth": (-90.0, 90.0), "elevation": (-23.0, 23.0), "light": (-80.0, 80.0)}


@dataclass(frozen=True)
class SweepConfig:
    batch_size: int = 20  # images per render batch (one training minibatch)
    ranges: dict = field(default_factory=lambda: dict(DEFAULT_RANGES))  # factor -> (min, max) degrees
    # Non-swept angles are drawn from this fraction of their range, centred: the
    # paper's fixed pose/light mostly sat near frontal.
    fixed_fraction: float = 0.6
    # Evaluation grid sizes (identities, azimuths, elevations, lights); only for the "grid" sweep.
    grid: tuple[int, int, int, int] = (12, 9, 5, 5)
    # Recognition set sizes (identities, azimuths); only for the "recognition" sweep.
    recognition: tuple[int, int] = (200, 13)

    def validate(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        for name in ("azimuth", "elevation", "light"):
            if name not in self.ranges:
                raise ValueError(f"ranges.{name} is missing")
            lo, hi = self.ranges[name]
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ValueError(f"ranges.{name}: min must not exceed max, got [{lo}, {hi}]")
        if len(self.grid) != 4 or any(int(n) <= 0 for n in self.grid):
            raise ValueError(f"grid must be four positive sizes (ids, azimuths, elevations, lights), got {self.grid}")
        if len(self.recognition) != 2 or any(int(n) <= 0 for n in self.recognition) or int(self.recognition[1]) < 2:
            raise ValueError(f"recognition must be two positive sizes (ids, azimuths >= 2), got {self.recognition}")
        if not 0.0 <= self.fixed_fraction <= 1.0:
            raise ValueError(f"fixed_fraction must lie in [0, 1], got {self.fixed_fraction}")


def batch_rng(seed: int, sweep: str, batch_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), ALL_SWEEPS.index(sweep), int(batch_index)])


def _stratified(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    edges = np.linspace(lo, hi, n + 1)
    return (edges[:-1] + rng.random(n) * np.diff(edges)).astype(np.float32)


def _fixed(rng: np.random.Generator, lo: float, hi: float, fraction: float) -> float:
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * fraction
    return float(rng.uniform(mid - half, mid + half))


def batch_factors(
    seed: int,
    sweep: str,
    batch_index: int,
    cfg: SweepConfig,
    n_shape: int,
    n_albedo: int,
    n_identities: int | None = None,
) -> dict[str, np.ndarray]:
    """Scene variables of one batch: per-image azimuth, elevation, light, identity, shape, albedo.

    ``n_identities`` is set for mesh-folder models (no coefficients): faces are
    then picked among the identities instead of drawn from the coefficient prior.
    """
    if sweep not in ALL_SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of {', '.join(ALL_SWEEPS)}")
    if sweep == GRID:
        return grid_factors(seed, batch_index, cfg, n_shape, n_albedo, n_identities)
    if sweep == RECOGNITION:
        return recognition_factors(seed, batch_index, cfg, n_shape, n_albedo, n_identities)
    rng = batch_rng(seed, sweep, batch_index)
    b = cfg.batch_size
    angles = {}
    for name in ("azimuth", "elevation", "light"):
        lo, hi = cfg.ranges[name]
        if sweep == name:
            angles[name] = _stratified(rng, lo, hi, b)
        else:
            angles[name] = np.full(b, _fixed(rng, lo, hi, cfg.fixed_fraction), np.float32)

    varies_shape = sweep in ("shape", "intrinsic")
    varies_albedo = sweep in ("texture", "intrinsic")
    shape = rng.standard_normal((b if varies_shape else 1, n_shape)).astype(np.float32)
    albedo = rng.standard_normal((b if varies_albedo else 1, n_albedo)).astype(np.float32)
    shape = np.broadcast_to(shape, (b, n_shape)).copy()
    albedo = np.broadcast_to(albedo, (b, n_albedo)).copy()

    if n_identities:
        # Mesh folders: shape and texture are tied to the mesh, so any intrinsic sweep picks meshes.
        k = b if sweep in ("shape", "texture", "intrinsic") else 1
        picks = rng.choice(n_identities, size=k, replace=k > n_identities)
        identity = np.broadcast_to(picks, (b,)).astype(np.int64).copy()
    else:
        # A unique id per drawn face, so identities can be compared across images and batches.
        base = ALL_SWEEPS.index(sweep) * 1_000_000_000 + int(batch_index) * b
        n_faces = b if (varies_shape or varies_albedo) else 1
        identity = np.broadcast_to(base + np.arange(n_faces), (b,)).astype(np.int64).copy()
    return {**angles, "identity": identity, "shape": shape, "albedo": albedo}


def grid_values(cfg: SweepConfig) -> dict[str, np.ndarray]:
    """The grid's factor values: evenly spaced over each range, endpoints included."""
    _, n_az, n_el, n_li = (int(n) for n in cfg.grid)
    return {
        "azimuth": np.linspace(*cfg.ranges["azimuth"], n_az).astype(np.float32),
        "elevation": np.linspace(*cfg.ranges["elevation"], n_el).astype(np.float32),
        "light": np.linspace(*cfg.ranges["light"], n_li).astype(np.float32),
    }


def grid_batches(cfg: SweepConfig) -> int:
    n_id, _, n_el, n_li = (int(n) for n in cfg.grid)
    return n_id * n_el * n_li


def grid_factors(
    seed: int, batch_index: int, cfg: SweepConfig, n_shape: int, n_albedo: int, n_identities: int | None = None
) -> dict[str, np.ndarray]:
    """Grid batch ``b``: every azimuth for (identity, elevation, light) = unravel(b, (n_id, n_el, n_li))."""
    n_id, n_az, n_el, n_li = (int(n) for n in cfg.grid)
    if cfg.batch_size != n_az:
        raise ValueError(f"grid batches hold every azimuth: batch_size must equal {n_az}, got {cfg.batch_size}")
    i, j, k = np.unravel_index(int(batch_index), (n_id, n_el, n_li))
    values = grid_values(cfg)
    # The face depends on the identity alone, so all its grid images show the same person.
    face_rng = np.random.default_rng([int(seed), ALL_SWEEPS.index(GRID), int(i)])
    shape = face_rng.standard_normal(n_shape).astype(np.float32)
    albedo = face_rng.standard_normal(n_albedo).astype(np.float32)
    identity = int(face_rng.integers(n_identities)) if n_identities else int(i)
    return {
        "azimuth": values["azimuth"].copy(),
        "elevation": np.full(n_az, values["elevation"][j], np.float32),
        "light": np.full(n_az, values["light"][k], np.float32),
        "identity": np.full(n_az, identity, np.int64),
        "shape": np.tile(shape, (n_az, 1)),
        "albedo": np.tile(albedo, (n_az, 1)),
    }


def recognition_azimuths(cfg: SweepConfig) -> np.ndarray:
    """The recognition set's azimuths: evenly spaced over the range, endpoints included."""
    return np.linspace(*cfg.ranges["azimuth"], int(cfg.recognition[1])).astype(np.float32)


def recognition_factors(
    seed: int, batch_index: int, cfg: SweepConfig, n_shape: int, n_albedo: int, n_identities: int | None = None
) -> dict[str, np.ndarray]:
    """Recognition batch ``b``: identity ``b`` at every recognition azimuth.

    Elevation and light are drawn per image over their whole ranges, so two views of a face
    differ in pose and light at once, as a recognition probe does.
    """
    n_id, n_az = (int(n) for n in cfg.recognition)
    if cfg.batch_size != n_az:
        raise ValueError(f"recognition batches hold every azimuth: batch_size must equal {n_az}, got {cfg.batch_size}")
    if not 0 <= int(batch_index) < n_id:
        raise ValueError(f"recognition batch {batch_index} is outside 0..{n_id - 1}")
    face_rng = np.random.default_rng([int(seed), ALL_SWEEPS.index(RECOGNITION), int(batch_index)])
    shape = face_rng.standard_normal(n_shape).astype(np.float32)
    albedo = face_rng.standard_normal(n_albedo).astype(np.float32)
    identity = int(face_rng.integers(n_identities)) if n_identities else int(batch_index)
    view_rng = np.random.default_rng([int(seed), ALL_SWEEPS.index(RECOGNITION), int(batch_index), 1])
    return {
        "azimuth": recognition_azimuths(cfg),
        "elevation": view_rng.uniform(*cfg.ranges["elevation"], n_az).astype(np.float32),
        "light": view_rng.uniform(*cfg.ranges["light"], n_az).astype(np.float32),
        "identity": np.full(n_az, identity, np.int64),
        "shape": np.tile(shape, (n_az, 1)),
        "albedo": np.tile(albedo, (n_az, 1)),
    }
