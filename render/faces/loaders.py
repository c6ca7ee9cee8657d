"""Load a morphable face model from a file or folder into a :class:`MorphableModel`.

``load_face_model(path)`` picks the reader from the file type (suffix, then the
first bytes):

* ``None`` / ``"default"`` / ``"procedural"`` - the embedded procedural head.
* ``*.mat`` - Basel Face Model 2009 (``01_MorphableModel.mat``): ``shapeMU``
  (3V x 1), ``shapePC`` (3V x K, unit columns), ``shapeEV`` (K, standard
  deviations), ``texMU``/``texPC``/``texEV`` (colours 0-255), ``tl`` (F x 3,
  1-based). MATLAB v7.3 (HDF5) files are read with h5py.
* ``*.h5`` / ``*.hdf5`` - Basel Face Model 2017: ``shape/model/{mean,
  pcaBasis,pcaVariance}``, ``shape/representer/{points,cells}``,
  ``color/model/...`` (colours in [0, 1]); the expression block is ignored.
  ``pcaBasis`` columns are taken as directions and ``pcaVariance`` as
  variances (std = sqrt). Every basis column is renormalised to unit length, so
  a file that stores the basis already scaled by the std is still right.
* ``*.bin`` - Surrey Face Model / eos ``MorphableModel`` written by eos's
  ``save_model`` (cereal binary archive, class versions 1-4). Read by a small
  pure-Python parser, no eos needed: shape and colour ``PcaModel`` (mean,
  orthonormal basis, eigenvalues = variances, triangle list), and landmark
  definitions when present. Expression models are skipped. A shape-only model
  gets a uniform skin colour and no albedo components.
* ``*.npz`` - the project's own format (below; write it with :func:`save_npz`).
* a folder of ``.obj`` / ``.ply`` / ``.off`` / ``.stl`` meshes (or one such
  file) - one identity per mesh, no correspondence needed; vertex colours are
  used when present, else a uniform skin colour. The renderer then picks among
  identities (``model.n_identities``, ``model.instance(..., identity=i)``,
  ``model.triangles_for(i)``).

Every source is brought into the canonical frame of :mod:`render.faces.model`:
the mean shape's bounding-box centre moves to the origin, it is scaled so its
farthest vertex is at radius 1, and triangles are flipped when they wind
inwards (tested with the signed volume about the centroid; BFM 2009 ``tl`` is
wound the other way). Sources are assumed to be +Y up with the face looking
along +Z, as BFM and the Surrey model are; mesh folders must follow the same
convention. Stored colours are treated as sRGB and converted to linear RGB; for
PCA colour models this is the first-order (tangent) conversion at the mean, so
the model stays linear.

Bad input raises :class:`FaceModelError` with one line naming the file and the
problem.

The ``.npz`` format
-------------------
An uncompressed or compressed NumPy ``.npz`` (no pickles) with these keys, named
after the :class:`MorphableModel` fields; V vertices, F triangles, Ks shape and
Ka albedo components:

===================  ============  ===================================================
key                  shape, dtype  meaning
===================  ============  ===================================================
``shape_mean``       (V, 3) f32    mean vertices, canonical frame (+Y up, +Z front,
                                   centred, max radius 1)
``shape_basis``      (Ks, V, 3)    unit-norm displacement directions
``shape_std``        (Ks,)         std of each component (same units as vertices)
``albedo_mean``      (V, 3) f32    mean linear-RGB albedo in [0, 1]
``albedo_basis``     (Ka, V, 3)    unit-norm colour directions
``albedo_std``       (Ka,)         std of each colour component
``triangles``        (F, 3) i32    0-based vertex indices, counter-clockwise seen
                                   from outside
``name``             () str        optional, a label for manifests
``landmarks``        () str        optional, JSON object {name: vertex index}
===================  ============  ===================================================

A face is ``shape_mean + sum_k c_k * shape_std[k] * shape_basis[k]`` (albedo
likewise, clipped to [0, 1]) with coefficients ``c ~ N(0, 1)``. Mesh-folder
models additionally store ``identities_vertices`` (sum V_i, 3),
``identities_colours`` (sum V_i, 3), ``identities_triangles`` (sum F_i, 3,
indices local to each mesh), ``identities_vertex_counts`` (N,) and
``identities_triangle_counts`` (N,); their bases have zero components.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from render.faces.model import MorphableModel

DEFAULT_SKIN_SRGB = (205, 160, 135)  # the colour of meshes and shape-only models without albedo
MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl")
_DEFAULT_NAMES = ("default", "procedural")


class FaceModelError(ValueError):
    """A face model file is missing, of unknown type, or malformed; the message names the file."""


# --- colour -----------------------------------------------------------------------------------
def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _srgb_to_linear_slope(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, 1.0 / 12.92, 2.4 / 1.055 * ((c + 0.055) / 1.055) ** 1.4)


def _default_colours(n: int) -> np.ndarray:
    rgb = _srgb_to_linear(np.asarray(DEFAULT_SKIN_SRGB, np.float64) / 255.0)
    return np.tile(rgb, (n, 1))


# --- shared conversion to the canonical frame -------------------------------------------------
def _fail(path, problem: str) -> FaceModelError:
    return FaceModelError(f"{path}: {problem}")


def _check_finite(path, what: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise _fail(path, f"{what} contains NaN or infinite values")


def _as_triangles(path, tris, n_vertices: int, one_based: bool = False) -> np.ndarray:
    tris = np.asarray(tris)
    if tris.ndim != 2 or 3 not in tris.shape:
        raise _fail(path, f"triangles must be an (F, 3) array, got shape {tris.shape}")
    if tris.shape[1] != 3:
        tris = tris.T
    if tris.shape[0] == 0:
        raise _fail(path, "the model has no triangles")
    _check_finite(path, "triangles", tris.astype(np.float64))
    if not np.all(np.equal(np.mod(tris, 1), 0)):
        raise _fail(path, "triangle indices are not integers")
    tris = tris.astype(np.int64) - (1 if one_based else 0)
    if tris.min() < 0 or tris.max() >= n_vertices:
        base = "1-based " if one_based else ""
        lo, hi = tris.min() + one_based, tris.max() + one_based
        raise _fail(path, f"{base}triangle indices {lo}..{hi} out of range for {n_vertices} vertices")
    return tris.astype(np.int32)


def _orient_outwards(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
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


def _build(
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
) -> MorphableModel:
    """Validate a PCA model given as flat arrays and convert it to the canonical frame.

    ``shape_mean`` (3V,), ``shape_pcs`` (3V, K) with x, y, z interleaved per vertex,
    ``shape_std`` (K,) standard deviations; colours likewise in [0, ``colour_range``].
    """
    mean = np.asarray(shape_mean, np.float64).reshape(-1)
    if mean.size == 0 or mean.size % 3:
        raise _fail(path, f"shape mean has {mean.size} values, not a positive multiple of 3")
    n_v = mean.size // 3
    pcs = np.asarray(shape_pcs, np.float64)
    pcs = pcs.reshape(pcs.shape[0], -1) if pcs.ndim != 2 else pcs
    if pcs.shape[0] != 3 * n_v:
        if pcs.shape[1] == 3 * n_v:
            pcs = pcs.T
        else:
            raise _fail(path, f"shape basis has shape {pcs.shape}, expected ({3 * n_v}, K) for {n_v} vertices")
    std = np.asarray(shape_std, np.float64).reshape(-1)
    if std.size != pcs.shape[1]:
        raise _fail(path, f"shape basis has {pcs.shape[1]} components but {std.size} standard deviations")
    for what, a in (("shape mean", mean), ("shape basis", pcs), ("shape standard deviations", std)):
        _check_finite(path, what, a)
    if np.any(std < 0):
        raise _fail(path, "shape standard deviations are negative")
    tris = _as_triangles(path, tris, n_v, one_based)

    if colour_mean is None or np.asarray(colour_mean).size == 0:
        cmean = _default_colours(n_v)
        cpcs, cstd = np.zeros((0, 3 * n_v)), np.zeros(0)
    else:
        cmean = np.asarray(colour_mean, np.float64).reshape(-1)
        if cmean.size != 3 * n_v:
            raise _fail(path, f"colour mean has {cmean.size} values but the shape has {n_v} vertices")
        cpcs = np.zeros((3 * n_v, 0)) if colour_pcs is None else np.asarray(colour_pcs, np.float64)
        if cpcs.ndim != 2 or 3 * n_v not in cpcs.shape:
            raise _fail(path, f"colour basis has shape {cpcs.shape}, expected ({3 * n_v}, K)")
        if cpcs.shape[0] != 3 * n_v:
            cpcs = cpcs.T
        cstd = np.ones(cpcs.shape[1]) if colour_std is None else np.asarray(colour_std, np.float64).reshape(-1)
        if cstd.size != cpcs.shape[1]:
            raise _fail(path, f"colour basis has {cpcs.shape[1]} components but {cstd.size} standard deviations")
        for what, a in (("colour mean", cmean), ("colour basis", cpcs), ("colour standard deviations", cstd)):
            _check_finite(path, what, a)
        if np.any(cstd < 0):
            raise _fail(path, "colour standard deviations are negative")
        cmean, cstd = cmean / colour_range, cstd / colour_range
        # Linear albedo: exact at the mean, tangent (first order) along the components.
        slope = _srgb_to_linear_slope(cmean)
        cpcs = (cpcs * slope[:, None]).T
        cmean = _srgb_to_linear(cmean).reshape(n_v, 3)
        cpcs, cstd = _normalise_columns(cpcs, cstd)

    pcs, std = _normalise_columns(pcs.T, std)
    verts = mean.reshape(n_v, 3)
    centre = 0.5 * (verts.min(axis=0) + verts.max(axis=0))
    verts = verts - centre
    radius = np.linalg.norm(verts, axis=1).max()
    if not radius > 0:
        raise _fail(path, "all vertices of the mean shape coincide")
    verts = verts / radius
    tris = _orient_outwards(verts, tris)
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


# --- BFM 2009 (.mat) --------------------------------------------------------------------------
def _load_mat(path: Path) -> MorphableModel:
    try:
        import scipy.io

        data = scipy.io.loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        return _load_mat_v73(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise _fail(path, f"not a readable MATLAB file ({e})") from None
    return _bfm2009_from(path, data)


def _load_mat_v73(path: Path) -> MorphableModel:
    import h5py

    with h5py.File(path, "r") as f:
        # MATLAB stores arrays transposed (column-major) in HDF5.
        data = {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    return _bfm2009_from(path, data)


def _bfm2009_from(path: Path, data: dict) -> MorphableModel:
    missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "tl") if k not in data]
    if missing:
        raise _fail(path, f"not a Basel Face Model 2009 file: missing {', '.join(missing)}")
    has_tex = all(k in data for k in ("texMU", "texPC", "texEV"))
    tex_range = 1.0
    if has_tex:
        tex_range = 255.0 if np.nanmax(np.asarray(data["texMU"], np.float64)) > 1.5 else 1.0
    return _build(
        path,
        data["shapeMU"],
        data["shapePC"],
        data["shapeEV"],
        data["tl"],
        data["texMU"] if has_tex else None,
        data["texPC"] if has_tex else None,
        data["texEV"] if has_tex else None,
        colour_range=tex_range,
        one_based=True,
    )


# --- BFM 2017 (.h5) ---------------------------------------------------------------------------
def _load_h5(path: Path) -> MorphableModel:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _fail(path, f"not a readable HDF5 file ({e})") from None
    with f:
        if "shape" not in f and "shapeMU" in f:
            return _load_mat_v73(path)

        def get(key: str, required: bool = True):
            if key in f:
                return np.asarray(f[key])
            if required:
                raise _fail(path, f"not a Basel Face Model 2017 file: missing {key}")
            return None

        mean = get("shape/model/mean")
        basis = get("shape/model/pcaBasis")
        var = get("shape/model/pcaVariance")
        cells = get("shape/representer/cells")
        cmean = get("color/model/mean", required=False)
        cbasis = get("color/model/pcaBasis", required=False)
        cvar = get("color/model/pcaVariance", required=False)
    for what, v in (("shape/model/pcaVariance", var), ("color/model/pcaVariance", cvar)):
        if v is not None and np.any(np.asarray(v) < 0):
            raise _fail(path, f"{what} has negative variances")
    has_colour = cmean is not None and cbasis is not None and cvar is not None
    crange = 255.0 if has_colour and np.nanmax(cmean) > 1.5 else 1.0
    return _build(
        path,
        mean,
        basis,
        np.sqrt(np.asarray(var, np.float64)),
        cells,
        cmean if has_colour else None,
        cbasis if has_colour else None,
        np.sqrt(np.asarray(cvar, np.float64)) if has_colour else None,
        colour_range=crange,
    )


# --- eos / Surrey Face Model (.bin, cereal binary) ---------------------------------------------
class _Reader:
    """Little-endian reader over cereal's BinaryOutputArchive layout."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _fail(self.path, f"truncated eos model file (needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def i32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8", errors="replace")

    def eigen(self) -> np.ndarray:
        """Eigen matrix: int32 rows, int32 cols, then float32 data in column-major order."""
        rows, cols = self.i32(), self.i32()
        if rows < 0 or cols < 0:
            raise _fail(self.path, f"bad matrix size {rows} x {cols} at offset {self.pos - 8}")
        flat = np.frombuffer(self.take(4 * rows * cols), dtype="<f4")
        return flat.reshape(cols, rows).T.astype(np.float64)

    def triangles(self) -> np.ndarray:
        n = self.u64()
        return np.frombuffer(self.take(12 * n), dtype="<i4").reshape(n, 3).astype(np.int64)

    def pca_model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """eos PcaModel: mean, orthonormal basis, eigenvalues (variances), triangle list."""
        mean, basis, eigenvalues = self.eigen(), self.eigen(), self.eigen()
        return mean.reshape(-1), basis, eigenvalues.reshape(-1), self.triangles()


def _load_eos(path: Path) -> MorphableModel:
    r = _Reader(path, path.read_bytes())
    version = r.u32()
    if version == 0 or version > 4:
        raise _fail(
            path,
            f"unsupported eos model version {version} (expected 1 to 4; version 0 is eos's old OpenCV-matrix format)",
        )
    s_mean, s_basis, s_eig, tris = r.pca_model()
    c_mean, c_basis, c_eig, _ = r.pca_model()
    landmarks: dict[str, int] = {}
    if version >= 2:
        if r.u8() == 0:  # optional holds a value (cereal writes "nullopt" = true when empty)
            kind = r.i32()  # variant index: 0 PcaModel, 1 Blendshapes
            if kind == 0:
                r.pca_model()
            elif kind == 1:
                for _ in range(r.u64()):
                    r.string()
                    r.eigen()
            else:
                raise _fail(path, f"unknown eos expression model type {kind}")
    if version >= 3 and r.u8() == 0:
        for _ in range(r.u64()):
            key = r.string()
            landmarks[key] = r.i32()
    if s_mean.size == 0:
        raise _fail(path, "the eos model has an empty shape model")
    if s_basis.shape[0] != s_mean.size:
        raise _fail(path, f"shape basis has {s_basis.shape[0]} rows but the mean has {s_mean.size} values")
    for what, v in (("shape eigenvalues", s_eig), ("colour eigenvalues", c_eig)):
        if np.any(v < 0):
            raise _fail(path, f"{what} are negative")
    has_colour = c_mean.size > 0
    n_v = s_mean.size // 3
    landmarks = {k: v for k, v in landmarks.items() if 0 <= v < n_v}
    return _build(
        path,
        s_mean,
        s_basis,
        np.sqrt(s_eig),
        tris,
        c_mean if has_colour else None,
        c_basis if has_colour else None,
        np.sqrt(c_eig) if has_colour else None,
        colour_range=255.0 if has_colour and np.nanmax(c_mean) > 1.5 else 1.0,
        landmarks=landmarks,
    )


# --- the project's .npz -----------------------------------------------------------------------
_ARRAY_KEYS = ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis", "albedo_std", "triangles")
_IDENTITY_KEYS = (
    "identities_vertices",
    "identities_colours",
    "identities_triangles",
    "identities_vertex_counts",
    "identities_triangle_counts",
)


def save_npz(model: MorphableModel, path: str | Path) -> Path:
    """Write ``model`` in the project's ``.npz`` format (see the module docstring); returns the path."""
    path = Path(path)
    arrays = {k: np.asarray(getattr(model, k)) for k in _ARRAY_KEYS}
    arrays["triangles"] = arrays["triangles"].astype(np.int32)
    for k in _ARRAY_KEYS[:-1]:
        arrays[k] = arrays[k].astype(np.float32)
    arrays["name"] = np.array(model.name)
    arrays["landmarks"] = np.array(json.dumps({k: int(v) for k, v in model.landmarks.items()}))
    if model.identities is not None:
        tris = model.identity_triangles or [model.triangles] * len(model.identities)
        arrays["identities_vertices"] = np.concatenate([v for v, _ in model.identities]).astype(np.float32)
        arrays["identities_colours"] = np.concatenate([c for _, c in model.identities]).astype(np.float32)
        arrays["identities_triangles"] = np.concatenate(tris).astype(np.int32)
        arrays["identities_vertex_counts"] = np.array([len(v) for v, _ in model.identities], np.int64)
        arrays["identities_triangle_counts"] = np.array([len(t) for t in tris], np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
        np.savez_compressed(f, **arrays)
    return path


def _load_npz(path: Path) -> MorphableModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as e:
        raise _fail(path, f"not a plain .npz archive ({e})") from None
    except Exception as e:
        raise _fail(path, f"not a readable .npz archive ({e})") from None
    missing = [k for k in _ARRAY_KEYS if k not in data]
    if missing:
        raise _fail(path, f"missing keys {', '.join(missing)}")
    try:
        landmarks = json.loads(str(data["landmarks"])) if "landmarks" in data else {}
    except json.JSONDecodeError:
        raise _fail(path, "landmarks is not a JSON object") from None
    model = MorphableModel(
        shape_mean=data["shape_mean"].astype(np.float32),
        shape_basis=data["shape_basis"].astype(np.float32),
        shape_std=data["shape_std"].astype(np.float32),
        albedo_mean=data["albedo_mean"].astype(np.float32),
        albedo_basis=data["albedo_basis"].astype(np.float32),
        albedo_std=data["albedo_std"].astype(np.float32),
        triangles=data["triangles"],
        name=str(data["name"]) if "name" in data else path.stem,
        landmarks={str(k): int(v) for k, v in dict(landmarks).items()},
    )
    if any(k in data for k in _IDENTITY_KEYS):
        missing = [k for k in _IDENTITY_KEYS if k not in data]
        if missing:
            raise _fail(path, f"incomplete mesh-folder model: missing {', '.join(missing)}")
        vc, tc = data["identities_vertex_counts"], data["identities_triangle_counts"]
        verts = np.split(data["identities_vertices"].astype(np.float32), np.cumsum(vc)[:-1])
        cols = np.split(data["identities_colours"].astype(np.float32), np.cumsum(vc)[:-1])
        tris = np.split(data["identities_triangles"], np.cumsum(tc)[:-1])
        if not (len(verts) == len(cols) == len(tris)) or sum(vc) != len(data["identities_vertices"]):
            raise _fail(path, "identity counts do not match the stored identity arrays")
        model.identity_triangles = [_as_triangles(path, t, len(v)) for v, t in zip(verts, tris, strict=True)]
        model.identities = list(zip(verts, cols, strict=True))
        model.triangles = model.identity_triangles[0]
    validate(model, path)
    return model


def validate(model: MorphableModel, source: str | Path = "model") -> MorphableModel:
    """Check array shapes, finiteness and triangle indices; raise FaceModelError naming ``source``."""
    mean = np.asarray(model.shape_mean)
    if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] == 0:
        raise _fail(source, f"shape_mean must be (V, 3) with V > 0, got {mean.shape}")
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
            raise _fail(source, f"{key} has shape {a.shape}, expected {want}")
    for basis, std in (("shape_basis", "shape_std"), ("albedo_basis", "albedo_std")):
        b, s = np.asarray(getattr(model, basis)), np.asarray(getattr(model, std))
        if s.ndim != 1 or s.shape[0] != b.shape[0]:
            raise _fail(source, f"{std} has shape {s.shape} but {basis} has {b.shape[0]} components")
        if np.any(s < 0):
            raise _fail(source, f"{std} has negative values")
    for key in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis", "albedo_std"):
        _check_finite(source, key, np.asarray(getattr(model, key)))
    model.triangles = _as_triangles(source, model.triangles, n_v)
    for v, c in model.identities or ():
        if v.ndim != 2 or v.shape[1] != 3 or c.shape != v.shape:
            raise _fail(source, f"an identity has vertices {v.shape} and colours {c.shape}")
        _check_finite(source, "identity vertices", v)
        _check_finite(source, "identity colours", c)
    return model


# --- mesh folders -----------------------------------------------------------------------------
def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One mesh in the canonical frame: (vertices, linear colours, triangles)."""
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:
        raise _fail(path, f"not a readable mesh ({e})") from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))))
    if len(verts) == 0:
        raise _fail(path, "the mesh has no vertices")
    _check_finite(path, "vertices", verts)
    tris = _as_triangles(path, faces.reshape(-1, 3) if faces.size else np.zeros((0, 3)), len(verts))
    colours = None
    visual = getattr(mesh, "visual", None)
    try:
        if visual is not None and visual.kind == "texture":
            visual = visual.to_color()  # samples the texture at each vertex's UV
        if visual is not None and visual.kind == "vertex":
            colours = _srgb_to_linear(np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0)
    except Exception:  # a broken texture only costs the colours
        colours = None
    if colours is None or len(colours) != len(verts):
        colours = _default_colours(len(verts))
    centre = 0.5 * (verts.min(axis=0) + verts.max(axis=0))
    verts = verts - centre
    radius = np.linalg.norm(verts, axis=1).max()
    if not radius > 0:
        raise _fail(path, "all vertices coincide")
    verts /= radius
    return verts.astype(np.float32), colours.astype(np.float32), _orient_outwards(verts, tris)


def _load_mesh_folder(path: Path, files: list[Path]) -> MorphableModel:
    meshes = [_load_mesh(f) for f in files]
    v0, c0, t0 = meshes[0]
    tris = [t for _, _, t in meshes]
    return MorphableModel(
        shape_mean=v0,
        shape_basis=np.zeros((0, len(v0), 3), np.float32),
        shape_std=np.zeros(0, np.float32),
        albedo_mean=c0,
        albedo_basis=np.zeros((0, len(v0), 3), np.float32),
        albedo_std=np.zeros(0, np.float32),
        triangles=tris[0],
        name=path.name,
        identities=[(v, c) for v, c, _ in meshes],
        identity_triangles=tris,
    )


# --- dispatch ---------------------------------------------------------------------------------
_READERS = {".mat": _load_mat, ".h5": _load_h5, ".hdf5": _load_h5, ".bin": _load_eos, ".npz": _load_npz}


def _sniff(path: Path):
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"\x89HDF"):
        return _load_h5
    if head.startswith(b"MATLAB"):
        return _load_mat
    if head.startswith(b"PK"):
        return _load_npz
    return None


def load_face_model(path: str | Path | None = None) -> MorphableModel:
    """Load a morphable face model; ``None`` or ``"default"`` gives the procedural head.

    Raises :class:`FaceModelError` (a ValueError) with the file and the problem.
    """
    if path is None or (isinstance(path, str) and path.strip().lower() in _DEFAULT_NAMES):
        from render.faces.procedural import procedural_face_model

        return procedural_face_model()
    path = Path(path).expanduser()
    if not path.exists():
        raise _fail(path, "no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        if not files:
            raise _fail(path, f"folder has no meshes ({', '.join(MESH_SUFFIXES)})")
        return _load_mesh_folder(path, files)
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        return _load_mesh_folder(path, [path])
    reader = _READERS.get(suffix) or _sniff(path)
    if reader is None:
        known = ", ".join(sorted({*_READERS, *MESH_SUFFIXES}))
        raise _fail(path, f"unknown face model format (expected {known}, or a folder of meshes)")
    try:
        model = reader(path)
    except FaceModelError:
        raise
    except (OSError, KeyError, TypeError, ValueError, IndexError, struct.error) as e:
        raise _fail(path, f"could not read the model ({type(e).__name__}: {e})") from None
    return validate(model, path)
