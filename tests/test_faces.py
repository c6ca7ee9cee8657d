"""Face sources: the procedural default model, the file loaders and the ``dcign-faces`` CLI."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest
import scipy.io
import trimesh
from click.testing import CliRunner

from render.faces import bfm2017, procedural
from render.faces import cli as faces_cli
from render.faces.loaders import FaceModelError, load_face_model, save_npz, validate
from render.faces.model import MorphableModel


@pytest.fixture(scope="module")
def model() -> MorphableModel:
    return procedural.procedural_face_model()


def signed_volume(verts: np.ndarray, tris: np.ndarray) -> float:
    v = verts.astype(np.float64) - verts.mean(axis=0)
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def dihedral_degrees(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Angle between the normals of every pair of triangles sharing an edge."""
    v = verts.astype(np.float64)
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(tris)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, face = edges[order], face[order]
    shared = np.all(edges[1:] == edges[:-1], axis=1)
    a, b = face[:-1][shared], face[1:][shared]
    return np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", n[a], n[b]), -1.0, 1.0)))


# --- procedural model ------------------------------------------------------------------------
def test_procedural_sizes_and_finite(model):
    assert 5000 <= model.n_vertices <= 20000
    assert model.n_shape >= 20 and model.n_albedo >= 8
    assert model.n_shape == len(procedural.shape_component_names)
    assert model.n_albedo == len(procedural.albedo_component_names)
    assert model.shape_basis.shape == (model.n_shape, model.n_vertices, 3)
    assert model.albedo_basis.shape == (model.n_albedo, model.n_vertices, 3)
    assert model.triangles.dtype == np.int32 and model.triangles.shape[1] == 3
    for a in (model.shape_mean, model.shape_basis, model.shape_std, model.albedo_mean, model.albedo_basis):
        assert np.all(np.isfinite(a))
    assert np.all(model.shape_std > 0) and np.all(model.albedo_std > 0)
    assert np.allclose(np.linalg.norm(model.shape_basis.reshape(model.n_shape, -1), axis=1), 1.0, atol=1e-4)
    assert 0.0 <= model.albedo_mean.min() and model.albedo_mean.max() <= 1.0
    assert model.n_identities is None and model.triangles_for(3) is model.triangles
    validate(model)


def test_procedural_is_deterministic(model):
    again = procedural.build_procedural_face_model()
    for key in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis", "triangles"):
        np.testing.assert_array_equal(getattr(again, key), getattr(model, key))
    assert procedural.procedural_face_model() is model  # memoised


def test_procedural_canonical_frame(model):
    v = model.shape_mean
    np.testing.assert_allclose(0.5 * (v.min(axis=0) + v.max(axis=0)), 0.0, atol=1e-5)
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    lm = {k: v[i] for k, i in model.landmarks.items()}
    # The nose is the front-most point, on the midline; eyes above the mouth, chin below it (+Y up).
    assert lm["nose_tip"][2] >= v[:, 2].max() - 0.01
    assert abs(v[np.argmax(v[:, 2]), 0]) < 0.02
    assert lm["left_eye"][1] > lm["nose_tip"][1] > lm["upper_lip"][1] > lm["chin"][1]
    assert lm["left_eye"][0] > 0 > lm["right_eye"][0]  # the person's left is +X in a right-handed frame
    assert v[:, 1].max() > lm["left_eye"][1] + 0.3  # a whole head: the crown is well above the eyes
    assert v[:, 2].min() < -0.6  # ... and it has a back


def test_procedural_mesh_is_closed_outward_and_smooth(model):
    tris = model.triangles
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)  # closed, so the signed volume is meaningful
    assert signed_volume(model.shape_mean, tris) > 0
    angles = dihedral_degrees(model.shape_mean, tris)
    assert np.percentile(angles, 99) < 30 and angles.max() < 90
    rng = np.random.default_rng(5)
    shape, albedo = model.sample(rng, 3)
    for s, a in zip(shape, albedo, strict=True):
        verts, _ = model.instance(s, a)
        assert signed_volume(verts, tris) > 0
        assert dihedral_degrees(verts, tris).max() < 120  # no folded-over triangles


def test_different_coefficients_give_different_faces(model):
    rng = np.random.default_rng(0)
    shape, albedo = model.sample(rng, 2)
    assert shape.shape == (2, model.n_shape) and albedo.shape == (2, model.n_albedo)
    (v0, c0), (v1, c1) = model.instance(shape[0], albedo[0]), model.instance(shape[1], albedo[1])
    assert v0.shape == (model.n_vertices, 3) and c0.shape == (model.n_vertices, 3)
    assert np.abs(v0 - v1).max() > 0.02
    assert np.abs(c0 - c1).max() > 0.02
    assert 0.0 <= c0.min() and c0.max() <= 1.0
    # Every single component visibly changes the face at 2 std.
    for k in range(model.n_shape):
        s = np.zeros(model.n_shape, np.float32)
        s[k] = 2.0
        assert np.abs(model.instance(s, np.zeros(model.n_albedo))[0] - model.shape_mean).max() > 0.01, k
    for k in range(model.n_albedo):
        a = np.zeros(model.n_albedo, np.float32)
        a[k] = 2.0
        assert np.abs(model.instance(np.zeros(model.n_shape), a)[1] - model.albedo_mean).max() > 0.02, k


def test_default_loader_gives_the_procedural_model(model):
    assert load_face_model(None) is model
    assert load_face_model("default") is model


# --- synthetic source models -----------------------------------------------------------------
V_ICO = 42  # trimesh.creation.icosphere(1)


def tiny_pca(seed: int = 0, k_shape: int = 3, k_tex: int = 2):
    """A small head-like source model in arbitrary units: mean (V, 3), unit PCs, stds, triangles."""
    rng = np.random.default_rng(seed)
    ico = trimesh.creation.icosphere(subdivisions=1)
    mean = ico.vertices * [0.8, 1.0, 0.9] + [0.1, -0.2, 0.3]
    pcs, _ = np.linalg.qr(rng.standard_normal((3 * V_ICO, k_shape)))
    std = np.array([0.05, 0.03, 0.02])[:k_shape]
    tex_mean = rng.uniform(0.3, 0.7, (V_ICO, 3))
    tex_pcs, _ = np.linalg.qr(rng.standard_normal((3 * V_ICO, k_tex)))
    tex_std = np.array([0.04, 0.02])[:k_tex]
    return mean, pcs, std, tex_mean, tex_pcs, tex_std, np.asarray(ico.faces)


def expected_vertices(mean, pcs, std, coeffs):
    """Instance in the canonical frame: bbox centre at 0, mean's max radius 1."""
    flat = mean.reshape(-1) + pcs @ (np.asarray(coeffs) * std)
    centre = 0.5 * (mean.min(axis=0) + mean.max(axis=0))
    radius = np.linalg.norm(mean - centre, axis=1).max()
    return (flat.reshape(-1, 3) - centre) / radius


def srgb_to_linear(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def write_bfm2009(path, scale=1e5, **overrides):
    """BFM 2009 layout: micrometres, colours 0-255, 1-based triangles wound inwards."""
    mean, pcs, std, tex_mean, tex_pcs, tex_std, tris = tiny_pca()
    data = {
        "shapeMU": (mean.reshape(-1, 1) * scale).astype(np.float32),
        "shapePC": pcs.astype(np.float32),
        "shapeEV": (std.reshape(-1, 1) * scale).astype(np.float32),
        "texMU": (tex_mean.reshape(-1, 1) * 255).astype(np.float32),
        "texPC": tex_pcs.astype(np.float32),
        "texEV": (tex_std.reshape(-1, 1) * 255).astype(np.float32),
        "tl": (tris[:, ::-1] + 1).astype(np.float64),
    }
    data.update(overrides)
    scipy.io.savemat(str(path), data)
    return path


def test_bfm2009_loader(tmp_path):
    path = write_bfm2009(tmp_path / "01_MorphableModel.mat")
    m = load_face_model(path)
    mean, pcs, std, tex_mean, _, _, tris = tiny_pca()
    assert (m.n_vertices, m.n_shape, m.n_albedo, len(m.triangles)) == (V_ICO, 3, 2, len(tris))
    c = np.array([1.0, -2.0, 0.5])
    verts, cols = m.instance(c, np.zeros(2))
    np.testing.assert_allclose(verts, expected_vertices(mean, pcs, std, c), atol=1e-4)
    np.testing.assert_allclose(cols, srgb_to_linear(tex_mean), atol=2e-3)
    assert np.linalg.norm(m.shape_mean, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    assert m.triangles.min() == 0 and signed_volume(m.shape_mean, m.triangles) > 0  # 0-based, wound outwards
    albedo = m.instance(np.zeros(3), np.array([1.5, -1.0]))[1]
    assert np.abs(albedo - cols).max() > 1e-3


def write_bfm2017(path, group: str | None = None, drop: tuple[str, ...] = (), **overrides):
    """BFM 2017 layout (centimetres, colours in [0, 1]); ``overrides`` by key with "/" as "__".

    ``group`` names a key stored as an HDF5 group (holding its data) instead of a dataset;
    ``drop`` keys are left out.
    """
    mean, pcs, std, tex_mean, tex_pcs, tex_std, tris = tiny_pca(seed=1)
    data = {
        "shape/model/mean": (mean.reshape(-1) * 100).astype(np.float32),
        "shape/model/pcaBasis": pcs.astype(np.float32),
        "shape/model/pcaVariance": ((std * 100) ** 2).astype(np.float32),
        "shape/representer/points": (mean.T * 100).astype(np.float32),
        "shape/representer/cells": tris.T.astype(np.int32),
        "color/model/mean": tex_mean.reshape(-1).astype(np.float32),
        "color/model/pcaBasis": tex_pcs.astype(np.float32),
        "color/model/pcaVariance": (tex_std**2).astype(np.float32),
        "expression/model/mean": np.zeros(3 * V_ICO, np.float32),
    }
    data.update({k.replace("__", "/"): v for k, v in overrides.items()})
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key == group:
                f.create_group(key)["data"] = value
            elif key not in drop:
                f[key] = value
    return path


def test_bfm2017_loader(tmp_path):
    mean, pcs, std, tex_mean, tex_pcs, tex_std, tris = tiny_pca(seed=1)
    path = write_bfm2017(tmp_path / "model2017-1_bfm_nomouth.h5")
    m = load_face_model(str(path))
    c = np.array([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(m.instance(c, np.zeros(2))[0], expected_vertices(mean, pcs, std, c), atol=1e-4)
    np.testing.assert_allclose(m.albedo_mean, srgb_to_linear(tex_mean), atol=1e-4)
    assert signed_volume(m.shape_mean, m.triangles) > 0


def eos_eigen(a) -> bytes:
    a = np.asarray(a, np.float32)
    a = a.reshape(-1, 1) if a.ndim == 1 else a
    return struct.pack("<ii", *a.shape) + a.T.astype("<f4").tobytes()  # column-major


def eos_pca(mean, basis, eigenvalues, tris) -> bytes:
    tri = np.asarray(tris, "<i4").reshape(-1, 3)
    return eos_eigen(mean) + eos_eigen(basis) + eos_eigen(eigenvalues) + struct.pack("<Q", len(tri)) + tri.tobytes()


def eos_string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def write_eos(path, version=4, colour=True, expression=True, landmarks=None):
    """eos::morphablemodel::MorphableModel as cereal's BinaryOutputArchive writes it."""
    mean, pcs, std, tex_mean, tex_pcs, tex_std, tris = tiny_pca(seed=2)
    out = struct.pack("<I", version) + eos_pca(mean.reshape(-1), pcs, std**2, tris)
    if colour:
        out += eos_pca(tex_mean.reshape(-1), tex_pcs, tex_std**2, tris)
    else:
        out += eos_pca(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 3)))
    if version >= 2:
        if expression:  # optional with a value, variant index 0 = PcaModel
            out += b"\x00" + struct.pack("<i", 0) + eos_pca(np.zeros(3 * V_ICO), pcs[:, :1], [1.0], tris)
        else:
            out += b"\x01"
    if version >= 3:
        if landmarks is None:
            out += b"\x01"
        else:
            out += b"\x00" + struct.pack("<Q", len(landmarks))
            out += b"".join(eos_string(k) + struct.pack("<i", v) for k, v in landmarks.items())
    out += struct.pack("<Q", 0)  # texture coordinates
    if version >= 4:
        out += struct.pack("<Q", 0)  # texture triangle indices
    path.write_bytes(out)
    return path, (mean, pcs, std, tex_mean)


def test_eos_loader(tmp_path):
    path, (mean, pcs, std, tex_mean) = write_eos(tmp_path / "sfm_shape_3448.bin", landmarks={"nose_tip": 7, "eye": 3})
    m = load_face_model(path)
    c = np.array([0.3, 1.0, -1.5])
    np.testing.assert_allclose(m.instance(c, np.zeros(m.n_albedo))[0], expected_vertices(mean, pcs, std, c), atol=1e-4)
    np.testing.assert_allclose(m.albedo_mean, srgb_to_linear(tex_mean), atol=1e-4)
    assert m.n_albedo == 2 and m.landmarks == {"nose_tip": 7, "eye": 3}


def test_eos_shape_only_gets_default_albedo(tmp_path):
    path, (mean, pcs, std, _) = write_eos(tmp_path / "shape_only.bin", version=1, colour=False)
    m = load_face_model(path)
    assert m.n_albedo == 0 and m.albedo_basis.shape == (0, V_ICO, 3)
    assert np.ptp(m.albedo_mean, axis=0).max() == 0 and 0 < m.albedo_mean.min() < m.albedo_mean.max() < 1
    c = np.array([2.0, 0.0, -1.0])
    np.testing.assert_allclose(m.instance(c, np.zeros(0))[0], expected_vertices(mean, pcs, std, c), atol=1e-4)


def test_npz_round_trip(tmp_path):
    src = load_face_model(write_bfm2009(tmp_path / "bfm.mat"))
    src.landmarks = {"nose_tip": 4}
    path = save_npz(src, tmp_path / "own.npz")
    back = load_face_model(path)
    for key in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis", "albedo_std", "triangles"):
        np.testing.assert_array_equal(getattr(back, key), getattr(src, key))
    assert back.name == src.name and back.landmarks == {"nose_tip": 4}
    with np.load(path, allow_pickle=False) as z:  # plain arrays only, keys named like the fields
        assert {"shape_mean", "triangles", "name", "landmarks"} <= set(z.files)
        assert json.loads(str(z["landmarks"])) == {"nose_tip": 4}


def write_mesh_folder(folder):
    folder.mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=3.0)
    sphere.apply_translation([10.0, 0.0, 0.0])
    sphere.visual.vertex_colors = np.tile([255, 128, 0, 255], (len(sphere.vertices), 1)).astype(np.uint8)
    sphere.export(folder / "a_sphere.ply")
    box = trimesh.creation.box(extents=[2.0, 4.0, 1.0])
    box.export(folder / "b_box.obj")
    (folder / "notes.txt").write_text("not a mesh")
    return sphere, box


def test_mesh_folder_loader(tmp_path):
    sphere, box = write_mesh_folder(tmp_path / "meshes")
    m = load_face_model(tmp_path / "meshes")
    assert m.n_identities == 2 and m.n_shape == 0 and m.n_albedo == 0
    for i, mesh in enumerate((sphere, box)):
        verts, cols = m.instance(np.zeros(0), np.zeros(0), identity=i)
        v = np.asarray(mesh.vertices)
        centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
        expect = (v - centre) / np.linalg.norm(v - centre, axis=1).max()
        np.testing.assert_allclose(np.sort(verts, axis=0), np.sort(expect, axis=0), atol=1e-5)
        tris = m.triangles_for(i)
        assert tris.shape == (len(mesh.faces), 3) and tris.max() < len(verts)
        assert signed_volume(verts, tris) > 0
        assert cols.shape == verts.shape
    sphere_cols = m.instance(np.zeros(0), np.zeros(0), identity=0)[1]
    np.testing.assert_allclose(sphere_cols[0], srgb_to_linear(np.array([1.0, 128 / 255, 0.0])), atol=1e-3)
    box_cols = m.instance(np.zeros(0), np.zeros(0), identity=1)[1]
    assert np.ptp(box_cols, axis=0).max() == 0  # no colours in the file: one default skin colour
    # Without an identity the model behaves as its first mesh; npz keeps the identities.
    np.testing.assert_array_equal(m.instance(np.zeros(0), np.zeros(0))[0], m.identities[0][0])
    back = load_face_model(save_npz(m, tmp_path / "meshes.npz"))
    assert back.n_identities == 2
    np.testing.assert_array_equal(back.triangles_for(1), m.triangles_for(1))
    np.testing.assert_array_equal(back.instance(np.zeros(0), np.zeros(0), identity=1)[0], m.identities[1][0])


# --- bad input -------------------------------------------------------------------------------
def bad_inputs(tmp_path):
    """(label, path) of files that must be refused."""
    mean, pcs, std, *_ = tiny_pca()
    cases = {
        "missing": tmp_path / "nope.mat",
        "unknown format": tmp_path / "model.txt",
        "wrong shapes": write_bfm2009(tmp_path / "shapes.mat", shapePC=np.ones((5, 3), np.float32)),
        "nan": write_bfm2009(tmp_path / "nan.mat", shapeMU=np.full((3 * V_ICO, 1), np.nan, np.float32)),
        "no triangles": write_bfm2009(tmp_path / "notris.mat", tl=np.zeros((0, 3))),
        "index range": write_bfm2009(tmp_path / "range.mat", tl=np.array([[1.0, 2.0, 99.0]])),
        "empty folder": tmp_path / "empty",
        "not a mat": tmp_path / "garbage.mat",
        "corrupt npz": tmp_path / "corrupt.npz",
        "npz keys": tmp_path / "keys.npz",
        "h5 keys": tmp_path / "keys.h5",
        "truncated eos": tmp_path / "truncated.bin",
        "eos version": tmp_path / "version.bin",
        "bad mesh": tmp_path / "broken.obj",
    }
    (tmp_path / "model.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no meshes here")
    (tmp_path / "garbage.mat").write_bytes(b"\x00\x01garbage" * 20)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "keys.npz", shape_mean=mean)
    with h5py.File(tmp_path / "keys.h5", "w") as f:
        f["shape/model/mean"] = mean.reshape(-1)
    full, _ = write_eos(tmp_path / "full.bin")
    (tmp_path / "truncated.bin").write_bytes(full.read_bytes()[:100])
    (tmp_path / "version.bin").write_bytes(struct.pack("<I", 0) + full.read_bytes()[4:])
    (tmp_path / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    return cases


def test_bad_inputs_raise_face_model_error_naming_the_file(tmp_path):
    for label, path in bad_inputs(tmp_path).items():
        with pytest.raises(FaceModelError) as info:
            load_face_model(path)
        message = str(info.value)
        assert path.name in message, (label, message)
        assert "\n" not in message, (label, message)
        assert isinstance(info.value, ValueError)


def one_line_error(path) -> str:
    """The FaceModelError of loading ``path``: checked to be one printable line naming the file."""
    with pytest.raises(FaceModelError) as info:
        load_face_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and message.isprintable(), message
    return message


# A part of a model that is there but cannot be read is an error naming the field, never a smaller model.
@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("texMU", "not a colour", "text"),
        ("texPC", np.array([[np.ones(3)]], dtype=object), "a cell array"),
        ("texEV", {"std": 1.0}, "a struct"),
        ("shapeEV", "not a number", "text"),
    ],
)
def test_bfm2009_field_of_the_wrong_type_is_an_error_naming_it(tmp_path, field, value, kind):
    message = one_line_error(write_bfm2009(tmp_path / "model.mat", **{field: value}))
    assert f"{field} is {kind}, not a numeric array" in message


@pytest.mark.parametrize("field", ["color/model/mean", "color/model/pcaBasis", "color/model/pcaVariance"])
def test_bfm2017_group_instead_of_a_dataset_is_an_error_naming_it(tmp_path, field):
    message = one_line_error(write_bfm2017(tmp_path / "model.h5", group=field))
    assert f"{field} is an HDF5 group, not a dataset" in message


def test_bfm2017_dataset_instead_of_a_group_is_an_error_naming_it(tmp_path):
    path = write_bfm2017(tmp_path / "model.h5", drop=tuple(bfm2017.COLOUR))
    with h5py.File(path, "a") as f:
        f["color/model"] = np.zeros(3, np.float32)  # where the colour datasets belong
    assert "color/model is an HDF5 dataset, not a group" in one_line_error(path)


@pytest.mark.parametrize("fmt, field", [("mat", "texMU"), ("h5", "color/model/mean")])
def test_a_colour_mean_far_outside_its_range_is_an_error_naming_it(tmp_path, fmt, field):
    if fmt == "mat":  # 0-255 and [0, 1] colours, each times 1e300: they loaded as an all-white face
        mean = tiny_pca()[3]
        path = write_bfm2009(tmp_path / "model.mat", texMU=(mean.reshape(-1, 1) * 255 * 1e300))
    else:
        path = write_bfm2017(tmp_path / "model.h5", color__model__mean=tiny_pca(seed=1)[3].reshape(-1) * 1e300)
    message = one_line_error(path)
    assert f"{field} spans" in message and "sRGB colours are stored in 0-1 or 0-255" in message


@pytest.mark.parametrize("field", ["shapeEV", "texEV"])
def test_an_absurd_standard_deviation_is_an_error_naming_it(tmp_path, field):
    std = tiny_pca()[2 if field == "shapeEV" else 5]
    path = write_bfm2009(tmp_path / "model.mat", **{field: std.reshape(-1, 1) * 1e300})
    assert f"{field} component 0 moves each value by" in one_line_error(path)


@pytest.mark.parametrize("fmt, missing", [("mat", "texPC"), ("h5", "color/model/pcaVariance")])
def test_an_incomplete_colour_model_is_an_error_naming_what_is_missing(tmp_path, fmt, missing):
    if fmt == "mat":
        path = tmp_path / "model.mat"
        write_bfm2009(path)
        data = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__") and k != missing}
        scipy.io.savemat(str(path), data)
    else:
        path = write_bfm2017(tmp_path / "model.h5", drop=(missing,))
    assert f"incomplete colour model: {missing} missing" in one_line_error(path)


@pytest.mark.parametrize("fmt", ["mat", "h5", "bin"])
def test_a_model_without_colours_loads_and_says_so_in_one_line(tmp_path, capsys, fmt):
    if fmt == "mat":
        path = tmp_path / "model.mat"
        write_bfm2009(path)
        data = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith(("__", "tex"))}
        scipy.io.savemat(str(path), data)
    elif fmt == "h5":
        path = write_bfm2017(tmp_path / "model.h5", drop=tuple(bfm2017.COLOUR))
    else:
        path = write_eos(tmp_path / "model.bin", version=1, colour=False)[0]
    capsys.readouterr()
    m = load_face_model(path)
    assert m.n_albedo == 0 and np.ptp(m.albedo_mean, axis=0).max() == 0  # as before: one skin colour
    err = capsys.readouterr().err
    assert err == f"warning: {path}: no colour model: every face gets the same uniform skin colour\n"
    load_face_model(path, quiet=True)
    assert capsys.readouterr().err == ""


def test_a_mesh_folder_says_how_many_meshes_have_no_colours(tmp_path, capsys):
    write_mesh_folder(tmp_path / "meshes")  # a coloured sphere and a plain box
    capsys.readouterr()
    load_face_model(tmp_path / "meshes")
    err = capsys.readouterr().err
    assert (
        err
        == f"warning: {tmp_path / 'meshes'}: 1 of 2 meshes have no vertex colours: they get one uniform skin colour\n"
    )


def test_eos_landmarks_out_of_range_are_left_out_in_one_line(tmp_path, capsys):
    path = write_eos(tmp_path / "sfm.bin", landmarks={"nose_tip": 7, "far": 10**6})[0]
    capsys.readouterr()
    assert load_face_model(path).landmarks == {"nose_tip": 7}
    err = capsys.readouterr().err
    assert err == f"warning: {path}: 1 landmarks name no vertex of {V_ICO} and are left out (first: 'far')\n"


def test_corrupt_npz_directory_bytes_are_quoted_printable_and_short(tmp_path):
    path = save_npz(load_face_model(write_bfm2009(tmp_path / "bfm.mat")), tmp_path / "model.npz")
    data = bytearray(path.read_bytes())
    data[26:28] = struct.pack("<H", 400)  # the first entry's name length: zipfile quotes 400 bytes of the archive
    path.write_bytes(bytes(data))
    message = one_line_error(path)
    assert "not a readable .npz archive (File name in directory" in message
    assert len(message) - len(str(path)) <= 200


def test_validate_rejects_inconsistent_model(model):
    broken = MorphableModel(
        shape_mean=model.shape_mean[:10],
        shape_basis=model.shape_basis[:, :10],
        shape_std=model.shape_std[:2],
        albedo_mean=model.albedo_mean[:10],
        albedo_basis=model.albedo_basis[:, :10],
        albedo_std=model.albedo_std,
        triangles=np.array([[0, 1, 2]], np.int32),
    )
    with pytest.raises(FaceModelError, match="shape_std"):
        validate(broken, "broken.npz")


# --- CLI -------------------------------------------------------------------------------------
def test_cli_info(tmp_path):
    runner = CliRunner()
    result = runner.invoke(faces_cli.main, ["info", "default"])
    assert result.exit_code == 0, result.output
    assert "vertices:    10242" in result.output and "shape:       30 components" in result.output
    result = runner.invoke(faces_cli.main, ["info", str(tmp_path / "missing.h5")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'missing.h5'}: no such file or directory"]


def test_cli_preview_calls_the_renderer(tmp_path, monkeypatch):
    import render.renderer

    calls = {}

    class FakeRenderer:  # the sheet's layout without Blender
        def __init__(self, settings):
            calls["settings"] = settings

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def render_faces(self, model, shape, albedo, azimuth, elevation, light, identities=None):
            calls.update(shape=shape, albedo=albedo, azimuths=np.asarray(azimuth), identities=identities)
            r = calls["settings"].resolution
            return np.full((len(shape), r, r, 3), 90, np.uint8)

    monkeypatch.setattr(render.renderer, "Renderer", FakeRenderer)
    out = tmp_path / "sheet.png"
    args = ["preview", "--model", "default", "--n", "3", "-o", str(out), "--resolution", "32", "--seed", "1"]
    result = CliRunner().invoke(faces_cli.main, args)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    assert (calls["settings"].resolution, calls["settings"].samples) == (32, 32)
    assert calls["shape"].shape == (6, 30) and list(calls["azimuths"]) == [0, 45] * 3
    np.testing.assert_array_equal(calls["shape"][0], calls["shape"][1])  # same face, two views
    assert calls["identities"] is None
