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
    note,
    orient_outwards,
    srgb255_to_linear,
)
from render.faces.model import MorphableModel
from render.text import printable

SUFFIXES = (".obj", ".ply", ".off", ".stl")


MAX_MESH_BYTES = 1 << 30  # a face mesh is megabytes; a larger file is refused before trimesh reads it


def _is_index(word: str) -> bool:
    return word.lstrip("+-").isdigit()


def check_obj_indices(path: Path, text: str) -> None:
    """Every OBJ face has at least 3 corners, each an integer vertex index counted from 1
    (negative: from the end; ``v/vt/vn`` keeps the vertex's first); 0 refers to no vertex.

    trimesh would read ``f 0 1 2`` as the last vertex, and would drop a face of one or two corners,
    or one with a word for an index, without a word: the mesh would load with silently wrong
    or missing triangles.
    """
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("f ") or line.startswith("f\t"):
            corners = line.split("#")[0].split()[1:]
            if len(corners) < 3:
                raise fail(path, f"line {number}: a face of {len(corners)} corners (at least 3)")
            for corner in corners:
                index = corner.split("/")[0]
                if not _is_index(index):
                    raise fail(path, f"line {number}: face corner {printable(corner)[:20]!r} is not a vertex index")
                if int(index) == 0:
                    raise fail(path, f"line {number}: face index 0 (OBJ vertex indices start at 1)")


def check_off_faces(path: Path, text: str, n_vertices: int, n_faces: int) -> None:
    """Every OFF face line gives its corner count (at least 3) and that many integer indices
    (colour values may follow): trimesh would drop a face of two corners without a word.
    ``n_vertices``, ``n_faces``: the header's counts (:func:`check_off_header`)."""
    lines = [ln.split("#")[0].split() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    first = 1 if len(lines[0]) > 1 else 2  # the counts on the OFF line, or on the next
    for k, words in enumerate(lines[first + n_vertices : first + n_vertices + n_faces]):
        if not _is_index(words[0]) or int(words[0]) < 3:
            raise fail(path, f"face {k}: a corner count of {printable(words[0])[:20]!r} (at least 3)")
        indices = words[1 : 1 + int(words[0])]
        if len(indices) < int(words[0]) or not all(_is_index(w) for w in indices):
            raise fail(path, f"face {k}: {words[0]} corners need {words[0]} integer vertex indices")


def check_off_header(path: Path, text: str, size: int) -> tuple[int, int]:
    """The vertex and face counts of an OFF header, which must fit in the file (each needs a few bytes).

    A header claiming 10^12 faces would otherwise make the reader allocate or loop for them.
    """
    words = [w for line in text.splitlines() for w in line.split("#")[0].split()]
    if not words or not words[0].endswith("OFF"):
        raise fail(path, "not an OFF file (no OFF header)")
    counts = words[1:4]
    if len(counts) < 3 or not all(c.isdigit() for c in counts):
        raise fail(path, "OFF header must give vertex, face and edge counts as integers")
    n_vertices, n_faces = int(counts[0]), int(counts[1])
    needed = 6 * n_vertices + 8 * n_faces  # "x y z\n" and "3 a b c\n" at their shortest
    if needed > size:
        raise fail(path, f"OFF header declares {n_vertices} vertices and {n_faces} faces, more than {size} bytes hold")
    return n_vertices, n_faces


def _prescan(path: Path) -> None:
    """Checks trimesh does not make, from the text of OBJ and OFF files."""
    size = path.stat().st_size
    if size > MAX_MESH_BYTES:
        raise fail(path, f"mesh file of {size} bytes is larger than {MAX_MESH_BYTES} (no face mesh is that large)")
    suffix = path.suffix.lower()
    if suffix not in (".obj", ".off"):
        return
    if suffix == ".obj":
        check_obj_indices(path, path.read_bytes().decode("utf-8", errors="replace"))
    else:
        with open(path, "rb") as f:  # the header is in the first lines
            head = f.read(4096).decode("utf-8", errors="replace")
        counts = check_off_header(path, "\n".join(head.splitlines()[:-1] or [head]), size)
        check_off_faces(path, path.read_bytes().decode("utf-8", errors="replace"), *counts)


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One mesh in the canonical frame: (vertices, linear colours or None when it has none, triangles)."""
    import trimesh

    _prescan(path)
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:
        raise fail(path, f"not a readable mesh ({printable(e)})") from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))))
    if len(verts) == 0:
        raise fail(path, "the mesh has no vertices")
    if verts.ndim != 2 or verts.shape[1] != 3:  # trimesh keeps what "v" lines hold: 2 or 4 numbers too
        raise fail(path, f"vertices must have 3 coordinates, got an array of shape {verts.shape}")
    check_finite(path, "vertices", verts)
    tris = as_triangles(path, faces.reshape(-1, 3) if faces.size else np.zeros((0, 3)), len(verts))
    colours = None
    visual = getattr(mesh, "visual", None)
    try:
        if visual is not None and visual.kind == "texture":
            visual = visual.to_color()  # samples the texture at each vertex's UV
        if visual is not None and visual.kind == "vertex":
            colours = srgb255_to_linear(np.asarray(visual.vertex_colors)[:, :3])
    except Exception as e:  # colours the file has but that cannot be read: never a silently grey face
        raise fail(path, f"its colours or texture cannot be read ({type(e).__name__}: {printable(e)})") from None
    if colours is not None and len(colours) != len(verts):
        raise fail(path, f"{len(colours)} vertex colours for {len(verts)} vertices")
    centre, radius = canonical_frame(path, verts)
    verts = (verts - centre) / radius
    return verts.astype(np.float32), colours, orient_outwards(verts, tris)


def load(path: Path, files: list[Path]) -> MorphableModel:
    meshes = [_load_mesh(f) for f in files]
    grey = sum(c is None for _, c, _ in meshes)
    if grey:
        of = f"{grey} of {len(meshes)} meshes have" if len(meshes) > 1 else "the mesh has"
        note(path, f"{of} no vertex colours: they get one uniform skin colour")
    meshes = [(v, (default_colours(len(v)) if c is None else c).astype(np.float32), t) for v, c, t in meshes]
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
