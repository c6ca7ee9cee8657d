"""The project's own face model format (``.npz``); write it with :func:`save_npz`.

An uncompressed or compressed NumPy ``.npz`` (no pickles) with these keys, named after the
:class:`~render.faces.model.MorphableModel` fields; V vertices, F triangles, Ks shape and Ka
albedo components:

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

A face is ``shape_mean + sum_k c_k * shape_std[k] * shape_basis[k]`` (albedo likewise, clipped
to [0, 1]) with coefficients ``c ~ N(0, 1)``. Mesh-folder models additionally store
``identities_vertices`` (sum V_i, 3), ``identities_colours`` (sum V_i, 3),
``identities_triangles`` (sum F_i, 3, indices local to each mesh), ``identities_vertex_counts``
(N,) and ``identities_triangle_counts`` (N,); their bases have zero components.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from render.faces.canonical import as_triangles, fail, real_array
from render.faces.model import MorphableModel
from render.text import printable

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


def parse_landmarks(path, text: str) -> dict[str, int]:
    """The ``landmarks`` entry: a JSON object of names to vertex indices (ranges are checked by ``validate``)."""
    try:
        landmarks = json.loads(text)
    except (ValueError, RecursionError):  # malformed, or nested deeper than the parser's stack
        raise fail(path, "landmarks is not a JSON object") from None
    if not isinstance(landmarks, dict):
        raise fail(path, f"landmarks must be a JSON object of names to vertex indices, got {type(landmarks).__name__}")
    bad = [k for k, v in landmarks.items() if not isinstance(v, int) or isinstance(v, bool)]
    if bad:  # 1e400 reads as a float (inf), 2.5 is no vertex
        raise fail(path, f"landmark {bad[0]!r:.40} must be an integer vertex index, got {landmarks[bad[0]]!r:.40}")
    return landmarks


def _real(path, data: dict, key: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32 is inf, which validate refuses naming the key
        return real_array(path, key, data[key]).astype(np.float32)


def load(path: Path) -> MorphableModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]  # numpy's messages run over lines
        raise fail(path, f"not a plain .npz archive ({printable(first)})") from None
    except Exception as e:  # zipfile's messages may quote the archive's raw bytes
        raise fail(path, f"not a readable .npz archive ({printable(e)})") from None
    missing = [k for k in _ARRAY_KEYS if k not in data]
    if missing:
        raise fail(path, f"missing keys {', '.join(missing)}")
    for key in ("name", "landmarks"):
        if key in data and (data[key].dtype.kind != "U" or data[key].ndim != 0):
            raise fail(path, f"{key} must be a text scalar, got {data[key].dtype} {data[key].shape}")
    landmarks = parse_landmarks(path, str(data["landmarks"])) if "landmarks" in data else {}
    model = MorphableModel(
        shape_mean=_real(path, data, "shape_mean"),
        shape_basis=_real(path, data, "shape_basis"),
        shape_std=_real(path, data, "shape_std"),
        albedo_mean=_real(path, data, "albedo_mean"),
        albedo_basis=_real(path, data, "albedo_basis"),
        albedo_std=_real(path, data, "albedo_std"),
        triangles=data["triangles"],
        name=str(data["name"]) if "name" in data else path.stem,
        landmarks=landmarks,
    )
    if any(k in data for k in _IDENTITY_KEYS):
        missing = [k for k in _IDENTITY_KEYS if k not in data]
        if missing:
            raise fail(path, f"incomplete mesh-folder model: missing {', '.join(missing)}")
        vc, tc = data["identities_vertex_counts"], data["identities_triangle_counts"]
        for key, counts in (("identities_vertex_counts", vc), ("identities_triangle_counts", tc)):
            if counts.ndim != 1 or counts.dtype.kind not in "iu" or counts.size == 0 or np.any(counts <= 0):
                raise fail(path, f"{key} must be a non-empty vector of positive integers")
        counts_match = (
            len(vc) == len(tc)
            and sum(vc) == len(data["identities_vertices"]) == len(data["identities_colours"])
            and sum(tc) == len(data["identities_triangles"])
        )
        if not counts_match:
            raise fail(path, "identity counts do not match the stored identity arrays")
        verts = np.split(_real(path, data, "identities_vertices"), np.cumsum(vc)[:-1])
        cols = np.split(_real(path, data, "identities_colours"), np.cumsum(vc)[:-1])
        tris = np.split(data["identities_triangles"], np.cumsum(tc)[:-1])
        model.identity_triangles = [as_triangles(path, t, len(v)) for v, t in zip(verts, tris, strict=True)]
        model.identities = list(zip(verts, cols, strict=True))
        model.triangles = model.identity_triangles[0]
    return model
