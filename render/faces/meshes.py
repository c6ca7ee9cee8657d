"""A folder of meshes (``.obj``, ``.ply``, ``.off``, ``.stl``), or one such file: one identity per mesh.

No correspondence is needed: the renderer picks among identities (``model.n_identities``,
``model.instance(..., identity=i)``, ``model.triangles_for(i)``). Vertex colours (sRGB, 0-255)
are used when present, else a uniform skin colour. Meshes must be +Y up with the face looking
along +Z; each is brought into the canonical frame on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.faces.canonical import (
    as_triangles,
    canonical_frame,
    check_finite,
    default_colours,
    fail,
    orient_outwards,
    srgb255_to_linear,
)
from render.faces.model import MorphableModel

SUFFIXES = (".obj", ".ply", ".off", ".stl")


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One mesh in the canonical frame: (vertices, linear colours, triangles)."""
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:
        raise fail(path, f"not a readable mesh ({e})") from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))))
    if len(verts) == 0:
        raise fail(path, "the mesh has no vertices")
    check_finite(path, "vertices", verts)
    tris = as_triangles(path, faces.reshape(-1, 3) if faces.size else np.zeros((0, 3)), len(verts))
    colours = None
    visual = getattr(mesh, "visual", None)
    try:
        if visual is not None and visual.kind == "texture":
            visual = visual.to_color()  # samples the texture at each vertex's UV
        if visual is not None and visual.kind == "vertex":
            colours = srgb255_to_linear(np.asarray(visual.vertex_colors)[:, :3])
    except Exception:  # a broken texture only costs the colours
        colours = None
    if colours is None or len(colours) != len(verts):
        colours = default_colours(len(verts))
    centre, radius = canonical_frame(path, verts)
    verts = (verts - centre) / radius
    return verts.astype(np.float32), colours.astype(np.float32), orient_outwards(verts, tris)


def load(path: Path, files: list[Path]) -> MorphableModel:
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
