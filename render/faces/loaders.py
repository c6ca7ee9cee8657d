"""Load a morphable face model from a file or folder into a :class:`MorphableModel`.

``load_face_model(path)`` picks the reader from the file type (suffix, then the first bytes);
each format has its own module:

* ``None`` / ``"default"`` / ``"procedural"`` - the embedded procedural head (:mod:`.procedural`).
* ``*.mat`` - Basel Face Model 2009 (:mod:`.bfm2009`, read by :mod:`.basel`).
* ``*.h5`` / ``*.hdf5`` - Basel Face Model 2017 (:mod:`.bfm2017`, read by :mod:`.basel`).
* ``*.bin`` - Surrey Face Model / eos (:mod:`.eos`).
* ``*.npz`` - the project's own format (:mod:`.npz`; write it with :func:`save_npz`).
* a folder of ``.obj`` / ``.ply`` / ``.off`` / ``.stl`` meshes, or one such file (:mod:`.meshes`).

Every source is brought into the canonical frame of :mod:`render.faces.model` by
:mod:`.canonical`, and checked by :func:`validate`. Bad input raises :class:`FaceModelError`
with one line naming the file and the problem.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

from render.faces import basel, eos, meshes, npz
from render.faces.canonical import as_triangles, check_finite, collect_notes, fail
from render.faces.model import FaceModelError, MorphableModel
from render.faces.npz import save_npz
from render.text import printable

__all__ = ["DEFAULT_NAMES", "FaceModelError", "load_face_model", "save_npz", "validate"]

DEFAULT_NAMES = ("", "default", "procedural")  # the embedded procedural head


def validate(model: MorphableModel, source: str | Path = "model") -> MorphableModel:
    """Check array shapes, finiteness, triangle and landmark indices and the canonical frame.

    Raises FaceModelError naming ``source``. Every loader's model passes here, so a file that
    reads but is not a usable model (scaled, shifted, collapsed, non-unit basis) is refused
    instead of rendering as flat grey.
    """
    mean = np.asarray(model.shape_mean)
    if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] == 0:
        raise fail(source, f"shape_mean must be (V, 3) with V > 0, got {mean.shape}")
    n_v = mean.shape[0]
    expect = {
        "shape_basis": (None, n_v, 3),
        "albedo_mean": (n_v, 3),
        "albedo_basis": (None, n_v, 3),
    }
    for key, shape in expect.items():
        a = np.asarray(getattr(model, key))
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
            want = "(" + ", ".join("K" if s is None else str(s) for s in shape) + ")"
            raise fail(source, f"{key} has shape {a.shape}, expected {want}")
    for basis, std in (("shape_basis", "shape_std"), ("albedo_basis", "albedo_std")):
        b, s = np.asarray(getattr(model, basis)), np.asarray(getattr(model, std))
        if s.ndim != 1 or s.shape[0] != b.shape[0]:
            raise fail(source, f"{std} has shape {s.shape} but {basis} has {b.shape[0]} components")
        if np.any(s < 0):
            raise fail(source, f"{std} has negative values")
    for key in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis", "albedo_std"):
        check_finite(source, key, np.asarray(getattr(model, key)))
    model.triangles = as_triangles(source, model.triangles, n_v)
    for v, c in model.identities or ():
        if v.ndim != 2 or v.shape[1] != 3 or c.shape != v.shape:
            raise fail(source, f"an identity has vertices {v.shape} and colours {c.shape}")
        check_finite(source, "identity vertices", v)
        check_finite(source, "identity colours", c)
        check_canonical_vertices(source, "identity vertices", v)
    check_canonical(model, source)
    return model


# How far a loaded model may sit from the canonical frame: float32 rounding of the conversion is
# ~1e-7; anything beyond these is a file that never went through it (scaled, shifted, hand-made).
FRAME_TOL = 1e-3  # radius 1 and bounding-box centre 0, in units of the radius
MIN_MEDIAN_RADIUS = 0.01  # a face fills its sphere; half its vertices at the centre is a collapsed mean
MIN_SHAPE_STD = 1e-5  # below this for every component, shape changes move no pixel (0.001 px at 64 px)


def check_canonical_vertices(source, what: str, v: np.ndarray) -> None:
    """Vertices in the canonical frame: bounding-box centre at 0, farthest at radius 1, not collapsed."""
    v = np.asarray(v, np.float64)
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    radius = np.linalg.norm(v, axis=1)
    if np.abs(centre).max() > FRAME_TOL:
        raise fail(source, f"{what} are not centred (bounding-box centre {np.round(centre, 4).tolist()}, want 0)")
    if abs(radius.max() - 1.0) > FRAME_TOL:
        raise fail(source, f"{what} are not in the canonical frame (bounding radius {radius.max():.6g}, want 1)")
    if np.median(radius) < MIN_MEDIAN_RADIUS:
        raise fail(source, f"{what} collapse to a point (median radius {np.median(radius):.3g}; an outlying vertex?)")


def check_canonical(model: MorphableModel, source) -> None:
    """What the renderer assumes of every model: canonical frame, unit basis, usable std, landmarks in range."""
    if model.identities is None:
        check_canonical_vertices(source, "shape_mean", model.shape_mean)
    for basis in ("shape_basis", "albedo_basis"):
        b = np.asarray(getattr(model, basis), np.float64)
        norms = np.linalg.norm(b.reshape(len(b), -1), axis=1) if len(b) else np.zeros(0)
        if norms.size and np.abs(norms - 1.0).max() > FRAME_TOL:
            k = int(np.abs(norms - 1.0).argmax())
            raise fail(source, f"{basis} component {k} has norm {norms[k]:.6g}, want unit-norm directions")
    if model.n_shape and float(np.max(model.shape_std)) < MIN_SHAPE_STD:
        raise fail(source, f"shape_std is degenerate (all below {MIN_SHAPE_STD} in the canonical frame)")
    albedo = np.asarray(model.albedo_mean)
    if albedo.min() < 0 or albedo.max() > 1:
        raise fail(source, f"albedo_mean must be linear RGB in [0, 1], got {albedo.min():.4g}..{albedo.max():.4g}")
    n_v = model.n_vertices
    for name, index in model.landmarks.items():
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n_v:
            raise fail(source, f"landmark {name!r:.40} is vertex {index!r:.40}, out of range for {n_v} vertices")


# --- dispatch ---------------------------------------------------------------------------------
_READERS = {".mat": basel.load_mat, ".h5": basel.load_h5, ".hdf5": basel.load_h5, ".bin": eos.load, ".npz": npz.load}


def _sniff(path: Path):
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"\x89HDF"):
        return basel.load_h5
    if head.startswith(b"MATLAB"):
        return basel.load_mat
    if head.startswith(b"PK"):
        return npz.load
    return None


def load_face_model(path: str | Path | None = None, quiet: bool = False) -> MorphableModel:
    """Load a morphable face model; ``None`` or ``"default"`` gives the procedural head.

    Raises :class:`FaceModelError` (a ValueError) with the file and the problem. A model that
    loads but lacks a part (no colours) is said on stderr, one line, unless ``quiet``.
    """
    with collect_notes() as notes:
        model = _load(path)
    for line in notes if not quiet else ():
        print(f"warning: {line}", file=sys.stderr)
    return model


def _load(path: str | Path | None) -> MorphableModel:
    if path is None or (isinstance(path, str) and path.strip().lower() in DEFAULT_NAMES):
        from render.faces.procedural import procedural_face_model

        return procedural_face_model()
    path = Path(path).expanduser()
    if not path.exists():
        raise fail(path, "no such file or directory")
    if not path.is_dir() and not path.is_file():  # a named pipe or a device: reading would block or never end
        raise fail(path, "not a regular file or a folder of meshes")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in meshes.SUFFIXES)
        if not files:
            raise fail(path, f"folder has no meshes ({', '.join(meshes.SUFFIXES)})")
        return validate(meshes.load(path, files), path)
    suffix = path.suffix.lower()
    if suffix in meshes.SUFFIXES:
        return validate(meshes.load(path, [path]), path)
    reader = _READERS.get(suffix) or _sniff(path)
    if reader is None:
        known = ", ".join(sorted({*_READERS, *meshes.SUFFIXES}))
        raise fail(path, f"unknown face model format (expected {known}, or a folder of meshes)")
    try:
        model = reader(path)
    except FaceModelError:
        raise
    except (OSError, KeyError, TypeError, ValueError, IndexError, struct.error, MemoryError, OverflowError) as e:
        raise fail(path, f"could not read the model ({type(e).__name__}: {printable(e)})") from None
    return validate(model, path)
