"""Every face source into the canonical frame, with its colours in linear RGB.

The canonical frame (see :mod:`render.faces.model`): the mean shape's bounding-box centre at the
origin, its farthest vertex at radius 1, triangles wound counter-clockwise seen from outside.
Sources are assumed to be +Y up with the face looking along +Z, as BFM and the Surrey model are.
Stored colours are sRGB, either in [0, 1] or in 0-255 (the function names say which); the
renderer wants linear RGB in [0, 1].
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from render.faces.model import FaceModelError, MorphableModel

DEFAULT_SKIN_SRGB255 = (205, 160, 135)  # the colour of meshes and shape-only models without albedo
MAX_SPREAD = 1e3  # RMS change of every value per std, in head radii or colour ranges (the exported embedded model: 39)


def fail(path, problem: str) -> FaceModelError:
    return FaceModelError(f"{path}: {problem}")


_notes: list[str] | None = None  # what the load in progress found worth saying, when not an error


def note(path, text: str) -> None:
    """Record a one-line remark about the model being loaded (see :func:`collect_notes`)."""
    if _notes is not None:
        _notes.append(f"{path}: {text}")


@contextlib.contextmanager
def collect_notes():
    """The remarks :func:`note` records while the block runs (a list, filled as they come)."""
    global _notes
    saved, _notes = _notes, []
    try:
        yield _notes
    finally:
        _notes = saved


def check_finite(path, what: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise fail(path, f"{what} contains NaN or infinite values")


def real_array(path, what: str, a) -> np.ndarray:
    """``a`` as float64, refusing what a cast would silently change.

    A complex array would lose its imaginary part, a boolean or text one would become a
    shape nobody stored; only integer and floating-point data are model values.
    """
    a = np.asarray(a)
    if a.dtype.kind not in "iuf":
        raise fail(path, f"{what} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


# --- colour -----------------------------------------------------------------------------------
def srgb01_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (clipped to it) -> linear RGB in [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb01_to_linear_slope(c: np.ndarray) -> np.ndarray:
    """d linear / d sRGB at sRGB values ``c`` in [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, 1.0 / 12.92, 2.4 / 1.055 * ((c + 0.055) / 1.055) ** 1.4)


def srgb255_to_linear(c) -> np.ndarray:
    """sRGB in 0-255 (8-bit values, any dtype) -> linear RGB in [0, 1]."""
    return srgb01_to_linear(np.asarray(c, dtype=np.float64) / 255.0)


def check_complete(path, data: dict, keys: tuple[str, ...]) -> bool:
    """Whether all of ``keys`` (a colour model) are in ``data``: none is no colour model, some is an error."""
    missing = [k for k in keys if k not in data]
    if missing and len(missing) < len(keys):
        raise fail(path, f"incomplete colour model: {', '.join(missing)} missing ({', '.join(keys)} come together)")
    return not missing


def colour_scale(mean) -> float:
    """255 for colours stored in 0-255 (any mean value above 1.5), else 1 for [0, 1]."""
    mean = np.asarray(mean, np.float64)
    return 255.0 if mean.size and np.nanmax(mean) > 1.5 else 1.0


def check_colour_range(path, what: str, mean: np.ndarray, colour_range: float) -> None:
    """A colour mean must lie in [0, ``colour_range``], give or take half of it (clipping absorbs that)."""
    lo, hi = float(mean.min()), float(mean.max())
    if lo < -0.5 * colour_range or hi > 1.5 * colour_range:
        raise fail(path, f"{what} spans {lo:.4g}..{hi:.4g}; sRGB colours are stored in 0-1 or 0-255")


def check_spread(path, what: str, std: np.ndarray, n_values: int, unit: str) -> None:
    """One std of a component may not move ``n_values`` values by more than MAX_SPREAD ``unit`` (RMS)."""
    if std.size and n_values:
        rms = float(std.max()) / np.sqrt(n_values)
        if not rms <= MAX_SPREAD:
            k = int(std.argmax())
            raise fail(path, f"{what} component {k} moves each value by {rms:.3g} {unit} per std; not a face model")


def default_colours(n: int) -> np.ndarray:
    """(n, 3) linear RGB of a uniform skin colour."""
    return np.tile(srgb255_to_linear(DEFAULT_SKIN_SRGB255), (n, 1))


# --- geometry ---------------------------------------------------------------------------------
def canonical_frame(path, vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the canonical frame of ``vertices`` (V, 3): canonical = (v - centre) / radius."""
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    if not radius > 0:
        raise fail(path, "all vertices coincide")
    return centre, radius


def as_triangles(path, tris, n_vertices: int, one_based: bool = False) -> np.ndarray:
    """(F, 3) int32 0-based vertex indices, checked against ``n_vertices``; (3, F) is transposed."""
    tris = np.asarray(tris)
    if tris.dtype.kind not in "iuf":
        raise fail(path, f"triangles must hold vertex indices, got dtype {tris.dtype}")
    if tris.ndim != 2 or 3 not in tris.shape:
        raise fail(path, f"triangles must be an (F, 3) array, got shape {tris.shape}")
    if tris.shape[1] != 3:
        tris = tris.T
    if tris.shape[0] == 0:
        raise fail(path, "the model has no triangles")
    check_finite(path, "triangles", tris.astype(np.float64))
    if not np.all(np.equal(np.mod(tris, 1), 0)):
        raise fail(path, "triangle indices are not integers")
    tris = tris.astype(np.int64) - (1 if one_based else 0)
    if tris.min() < 0 or tris.max() >= n_vertices:
        base = "1-based " if one_based else ""
        lo, hi = tris.min() + one_based, tris.max() + one_based
        raise fail(path, f"{base}triangle indices {lo}..{hi} out of range for {n_vertices} vertices")
    return tris.astype(np.int32)


def orient_outwards(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Flip the winding when the signed volume about the centroid is negative (inward normals)."""
    c = verts.mean(axis=0)
    a, b, d = verts[tris[:, 0]] - c, verts[tris[:, 1]] - c, verts[tris[:, 2]] - c
    volume = np.einsum("ij,ij->i", a, np.cross(b, d)).sum()
    return tris[:, ::-1].copy() if volume < 0 else tris


def _normalise_columns(basis: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm basis rows (K, 3V); their norms move into std."""
    norms = np.linalg.norm(basis, axis=1)
    keep = norms > 0
    return basis[keep] / norms[keep, None], std[keep] * norms[keep]


# --- a PCA model given as flat arrays ---------------------------------------------------------
PCA_NAMES = ("shape mean", "shape basis", "shape std", "colour mean", "colour basis", "colour std")


def pca_model(
    path,
    shape_mean,
    shape_pcs,
    shape_std,
    tris,
    colour_mean=None,
    colour_pcs=None,
    colour_std=None,
    colour_range: float = 1.0,
    one_based: bool = False,
    name: str | None = None,
    landmarks: dict[str, int] | None = None,
    names: tuple[str, ...] = PCA_NAMES,
) -> MorphableModel:
    """Validate a PCA model given as flat arrays and convert it to the canonical frame.

    ``shape_mean`` (3V,), ``shape_pcs`` (3V, K) with x, y, z interleaved per vertex,
    ``shape_std`` (K,) standard deviations; colours likewise, sRGB in [0, ``colour_range``].
    ``colour_mean`` None is a model without colours (one skin colour, noted); ``names`` are the
    file's names of the six arrays, for messages. Linear albedo is exact at the mean and first
    order (the tangent) along the components, so the model stays linear.
    """
    n_mean, n_pcs, n_std, c_mean, c_pcs, c_std = names
    mean = real_array(path, n_mean, shape_mean).reshape(-1)
    if mean.size == 0 or mean.size % 3:
        raise fail(path, f"{n_mean} has {mean.size} values, not a positive multiple of 3")
    n_v = mean.size // 3
    pcs = real_array(path, n_pcs, shape_pcs)
    pcs = pcs.reshape(pcs.shape[0], -1) if pcs.ndim != 2 else pcs
    if pcs.shape[0] != 3 * n_v:
        if pcs.shape[1] == 3 * n_v:
            pcs = pcs.T
        else:
            raise fail(path, f"{n_pcs} has shape {pcs.shape}, expected ({3 * n_v}, K) for {n_v} vertices")
    std = real_array(path, n_std, shape_std).reshape(-1)
    if std.size != pcs.shape[1]:
        raise fail(path, f"{n_pcs} has {pcs.shape[1]} components but {n_std} has {std.size} values")
    for what, a in ((n_mean, mean), (n_pcs, pcs), (n_std, std)):
        check_finite(path, what, a)
    if np.any(std < 0):
        raise fail(path, f"{n_std} has negative values")
    tris = as_triangles(path, tris, n_v, one_based)

    if colour_mean is None:
        note(path, "no colour model: every face gets the same uniform skin colour")
        cmean = default_colours(n_v)
        cpcs, cstd = np.zeros((0, 3 * n_v)), np.zeros(0)
    else:
        cmean = real_array(path, c_mean, colour_mean).reshape(-1)
        if cmean.size != 3 * n_v:
            raise fail(path, f"{c_mean} has {cmean.size} values but the shape has {n_v} vertices")
        cpcs = np.zeros((3 * n_v, 0)) if colour_pcs is None else real_array(path, c_pcs, colour_pcs)
        if cpcs.ndim != 2 or 3 * n_v not in cpcs.shape:
            raise fail(path, f"{c_pcs} has shape {cpcs.shape}, expected ({3 * n_v}, K)")
        if cpcs.shape[0] != 3 * n_v:
            cpcs = cpcs.T
        cstd = np.ones(cpcs.shape[1]) if colour_std is None else real_array(path, c_std, colour_std).reshape(-1)
        if cstd.size != cpcs.shape[1]:
            raise fail(path, f"{c_pcs} has {cpcs.shape[1]} components but {c_std} has {cstd.size} values")
        for what, a in ((c_mean, cmean), (c_pcs, cpcs), (c_std, cstd)):
            check_finite(path, what, a)
        if np.any(cstd < 0):
            raise fail(path, f"{c_std} has negative values")
        check_colour_range(path, c_mean, cmean, colour_range)
        cmean, cstd = cmean / colour_range, cstd / colour_range
        slope = srgb01_to_linear_slope(cmean)
        cpcs = (cpcs * slope[:, None]).T
        cmean = srgb01_to_linear(cmean).reshape(n_v, 3)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing norm is refused just below
            cpcs, cstd = _normalise_columns(cpcs, cstd)
        check_spread(path, c_std, cstd, 3 * n_v, "of the colour range")

    with np.errstate(over="ignore", invalid="ignore"):
        pcs, std = _normalise_columns(pcs.T, std)
    verts = mean.reshape(n_v, 3)
    centre, radius = canonical_frame(path, verts)
    verts = (verts - centre) / radius
    check_spread(path, n_std, std / radius, 3 * n_v, "of the head's radius")
    tris = orient_outwards(verts, tris)
    return MorphableModel(
        shape_mean=verts.astype(np.float32),
        shape_basis=pcs.reshape(-1, n_v, 3).astype(np.float32),
        shape_std=(std / radius).astype(np.float32),
        albedo_mean=np.clip(cmean.reshape(n_v, 3), 0.0, 1.0).astype(np.float32),
        albedo_basis=cpcs.reshape(-1, n_v, 3).astype(np.float32),
        albedo_std=cstd.astype(np.float32),
        triangles=tris,
        name=name or Path(path).name,
        landmarks=dict(landmarks or {}),
    )
