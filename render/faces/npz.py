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

from render.faces.canonical import as_triangles, fail
from render.faces.model import MorphableModel

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


def load(path: Path) -> MorphableModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as e:
        raise fail(path, f"not a plain .npz archive ({e})") from None
    except Exception as e:
        raise fail(path, f"not a readable .npz archive ({e})") from None
    missing = [k for k in _ARRAY_KEYS if k not in data]
    if missing:
        raise fail(path, f"missing keys {', '.join(missing)}")
    try:
        landmarks = json.loads(str(data["landmarks"])) if "landmarks" in data else {}
    except json.JSONDecodeError:
        raise fail(path, "landmarks is not a JSON object") from None
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
            raise fail(path, f"incomplete mesh-folder model: missing {', '.join(missing)}")
        vc, tc = data["identities_vertex_counts"], data["identities_triangle_counts"]
        verts = np.split(data["identities_vertices"].astype(np.float32), np.cumsum(vc)[:-1])
        cols = np.split(data["identities_colours"].astype(np.float32), np.cumsum(vc)[:-1])
        tris = np.split(data["identities_triangles"], np.cumsum(tc)[:-1])
        if not (len(verts) == len(cols) == len(tris)) or sum(vc) != len(data["identities_vertices"]):
            raise fail(path, "identity counts do not match the stored identity arrays")
        model.identity_triangles = [as_triangles(path, t, len(v)) for v, t in zip(verts, tris, strict=True)]
        model.identities = list(zip(verts, cols, strict=True))
        model.triangles = model.identity_triangles[0]
    return model
