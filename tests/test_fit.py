"""dcign-fit: the calibration read-out, the search on problems with a known answer, the command's errors.

The fast tests use a drawn (untrained) network and a synthetic renderer; the tests marked slow
fit a face rendered by Blender with the tiny project's trained model and calibration.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dataset_fixtures import make_fake_dataset
from stage_code import assert_deps_are_the_code
from tiny_profile import write_tiny_params

from pipeline.evaluation import calibration as C
from pipeline.inverse import cli as fit_cli
from pipeline.inverse import fit as fitting
from pipeline.inverse import results as fit_results
from pipeline.inverse import stage as fit_stage
from render.params import ParamsError, get, load_params
from render.scene_renderer import Scene, SceneRenderer
from render.vocabulary import FACTORS

ROOT = Path(__file__).resolve().parents[1]
RANGES = {"azimuth": (-90.0, 90.0), "elevation": (-23.0, 23.0), "light": (-80.0, 80.0)}


# --- the amortised read-out -------------------------------------------------------------------------
def test_angles_are_read_through_the_inverse_calibration():
    rng = np.random.default_rng(0)
    angles = {f: rng.uniform(*RANGES[f], 200) for f in FACTORS}
    codes = {  # latent 0 rises with azimuth, latent 1 falls with elevation, latent 2 is a monotone curve
        "azimuth": np.stack([angles["azimuth"] / 30, rng.normal(size=200)], 1),
        "elevation": np.stack([rng.normal(size=200), -angles["elevation"] / 10], 1),
        "light": np.stack([np.tanh(angles["light"] / 60), rng.normal(size=200)], 1),
    }
    sweeps = {}
    for f, lat in (("azimuth", 0), ("elevation", 1), ("light", 0)):
        z = np.zeros((200, 3))
        z[:, {"azimuth": 0, "elevation": 1, "light": 2}[f]] = codes[f][:, lat]
        sweeps[f] = (z, angles[f])
    calib = C.fit(sweeps, {"azimuth": [0], "elevation": [1], "light": [2]})
    mu = np.array([45 / 30, 10 / 10, np.tanh(-50 / 60)])  # elevation -10: latent -(-10) / 10
    got = C.read_angles(calib, mu)
    assert got["azimuth"] == pytest.approx(45, abs=3)
    assert got["elevation"] == pytest.approx(-10, abs=1.5)
    assert got["light"] == pytest.approx(-50, abs=4)
    # beyond the calibrated codes the angle is clamped to the calibrated range; a missing factor takes the default
    assert C.read_angles(calib, np.array([99.0, 0.0, 0.0]))["azimuth"] <= 90
    assert C.read_angles({"azimuth": calib["azimuth"]}, mu, {"light": 7.0})["light"] == 7.0


# --- the search on a synthetic renderer with a known answer -----------------------------------------
R = 32
YY, XX = np.mgrid[0:R, 0:R].astype(np.float64)


def blob_render(scenes):
    """A smooth stand-in for Blender: a blob whose place and width follow the pose and shape, a bar lit by the light."""
    out = []
    for s in scenes:
        cx, cy = R / 2 + s.azimuth / 9, R / 2 - 4 - s.elevation / 3
        width = 3.0 * (1 + 0.25 * (s.shape[0] if s.shape else 0.0))
        image = 220 * np.exp(-((XX - cx) ** 2 + (YY - cy) ** 2) / (2 * width**2))
        image[-4:] = 30 + 200 * (s.light + 80) / 160
        out.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return np.stack(out)


def test_search_recovers_a_known_scene_within_its_budget_and_is_deterministic():
    truth = Scene(40.0, -10.0, 35.0, (1.2,))
    target = blob_render([truth])[0]
    space = fitting.SearchSpace(RANGES, n_shape=1, n_albedo=0)
    cfg = fitting.FitConfig(budget=150, shape_components=1, albedo_components=0, seed=3)
    start = Scene(15.0, 0.0, 0.0, (0.0,))
    r = fitting.search(fitting.PixelObjective(target), blob_render, start, space, cfg)
    assert r.renders <= cfg.budget
    assert r.value < 0.05 * r.start_value
    assert abs(r.scene.azimuth - truth.azimuth) < 4
    assert abs(r.scene.elevation - truth.elevation) < 2
    assert abs(r.scene.light - truth.light) < 5
    assert abs(r.scene.shape[0] - truth.shape[0]) < 0.25
    best = [t["best"] for t in r.trace]
    assert best == sorted(best, reverse=True) and best[-1] == r.value and r.trace[-1]["renders"] == r.renders
    again = fitting.search(fitting.PixelObjective(target), blob_render, start, space, cfg)
    assert again.scene == r.scene and again.trace == r.trace
    other = fitting.search(
        fitting.PixelObjective(target), blob_render, start, space, fitting.FitConfig(budget=150, seed=4)
    )
    assert other.trace != r.trace


def test_search_space_round_trip_and_bounds():
    space = fitting.SearchSpace(RANGES, n_shape=2, n_albedo=1, coefficient_bound=3.0)
    s = Scene(30.0, -5.0, 60.0, (0.5, -1.0), (2.0,))
    back = space.to_scene(space.to_x(s))
    assert (back.azimuth, back.elevation, back.light) == pytest.approx((30, -5, 60))
    assert back.shape == pytest.approx(s.shape) and back.albedo == pytest.approx(s.albedo)
    clipped = space.to_scene(np.full(space.dim, 100.0))
    assert (clipped.azimuth, clipped.elevation, clipped.light) == pytest.approx((90, 23, 80))
    assert clipped.shape == (3.0, 3.0) and clipped.albedo == (3.0,)
    # short coefficient vectors are padded with the mean (0), long ones cut
    assert space.to_scene(space.to_x(Scene(0, 0, 0, (1.0,), ()))).shape == (1.0, 0.0)


# --- the code objective on a drawn network ----------------------------------------------------------
def drawn_model(resolution=16, latent=6):
    from dcign.config import ModelConfig
    from dcign.model import DCIGN

    torch.manual_seed(0)
    cfg = ModelConfig(resolution=resolution, filters=(4, 4, 4), latent=latent, conv_init="he", init_std=0.1)
    return DCIGN(cfg.validate()).eval()


def test_code_objective_is_zero_at_the_image_and_weighs_groups():
    model = drawn_model()
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (16, 16), dtype=np.uint8) for _ in range(2))
    obj = fitting.CodeObjective(model, a)
    values = obj(np.stack([a, b]))
    assert values[0] == pytest.approx(0, abs=1e-10) and values[1] > 0
    assert fitting.CodeObjective(model, a, weights={g: 0.0 for g in model.groups})(b[None])[0] == 0
    only_az = fitting.CodeObjective(model, a, weights={"elevation": 0, "light": 0, "intrinsic": 0})(b[None])[0]
    assert 0 < only_az < values[1] * 10
    assert set(fitting.CodeObjective(model, a, grouped=False).groups) == {"code"}
    with pytest.raises(fitting.FitError, match="unknown latent groups"):
        fitting.CodeObjective(model, a, weights={"pose": 1.0})


def test_fit_config_is_checked():
    with pytest.raises(fitting.FitError, match="budget"):
        fitting.FitConfig(budget=1).validate()
    with pytest.raises(fitting.FitError, match="shape_components"):
        fitting.FitConfig(shape_components=-1).validate()


def test_stage_defaults_equal_params_yaml():
    p = load_params(ROOT / "params.yaml")
    cfg, _ = fit_stage.config_from_params(p)
    assert cfg == fit_stage.StageConfig()
    assert {f.name for f in fields(fit_stage.StageConfig)} == set(get(p, "fit"))
    assert fit_stage.config_from_params(load_params(ROOT / "params-paper.yaml"))[0].budget > 0


def test_held_out_scenes_are_new_and_reproducible():
    a = fit_stage.held_out(5, 2000, RANGES, 30, 13)
    assert a == fit_stage.held_out(5, 2000, RANGES, 30, 13) and a != fit_stage.held_out(5, 2001, RANGES, 30, 13)
    for s in a:
        assert all(RANGES[f][0] <= getattr(s, f) <= RANGES[f][1] for f in FACTORS) and len(s.shape) == 30


# --- the command's errors (before any render) -------------------------------------------------------
@pytest.fixture(scope="module")
def drawn_project(tmp_path_factory) -> Path:
    """models/dcign: a drawn 16x16 network saved as a checkpoint; eval/calibration/dcign.npz for it."""
    from dcign.checkpoint import save_checkpoint
    from dcign.config import TrainConfig

    root = tmp_path_factory.mktemp("fit_project")
    model = drawn_model()
    cfg = TrainConfig(model=model.config, steps=1)
    (root / "models" / "dcign").mkdir(parents=True)
    save_checkpoint(root / "models" / "dcign", model, torch.optim.Adam(model.parameters()), cfg, 1, {})
    angles = np.linspace(-90, 90, 20)
    codes = np.zeros((20, 6))
    codes[:, :3] = angles[:, None] / 90
    calib = C.fit({f: (codes, angles) for f in FACTORS}, {"azimuth": [0], "elevation": [1], "light": [2]})
    (root / "eval" / "calibration").mkdir(parents=True)
    C.save(root / "eval" / "calibration" / "dcign.npz", calib)
    return root


def run_fit(*args):
    return CliRunner().invoke(fit_cli.main, [str(a) for a in args])


def write_png(path: Path, size: int) -> Path:
    import cv2

    cv2.imwrite(str(path), np.full((size, size), 128, np.uint8))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_an_image", "not an image OpenCV can decode"),
        ("wrong_size", "image is 20x20, the checkpoint's resolution is 16x16"),
        ("sweep_resolution", "rendered at 8x8 but the checkpoint was trained at 16x16"),
        ("face_model", "broken.npz"),
        ("calibration", "outside the model's 6 latents"),
        ("empty_folder", "no PNG or JPEG images"),
        ("missing", "no such file or directory"),
    ],
)
def test_cli_errors_name_the_file_and_write_nothing(drawn_project, tmp_path, case, message):
    ckpt = drawn_project / "models" / "dcign"
    image = write_png(tmp_path / "face.png", 16)
    extra: list = []
    if case == "not_an_image":
        image = tmp_path / "notes.png"
        image.write_text("not pixels")
    elif case == "wrong_size":
        image = write_png(tmp_path / "big.png", 20)
        extra = ["--no-resize"]
    elif case == "sweep_resolution":
        (image,) = make_fake_dataset(tmp_path / "sweeps", sweeps=("azimuth",), n_batches=1, batch_size=2, resolution=8)
    elif case == "face_model":
        (tmp_path / "broken.npz").write_bytes(b"PK not a zip")
        extra = ["--model", tmp_path / "broken.npz"]
    elif case == "calibration":
        other = {f: C.fit_factor(np.zeros((4, 10)) + np.arange(4)[:, None], np.arange(4.0), [9]) for f in FACTORS}
        C.save(tmp_path / "other.npz", other)
        extra = ["--calibration", tmp_path / "other.npz"]
    elif case == "empty_folder":
        image = tmp_path / "empty"
        image.mkdir()
    elif case == "missing":
        image = tmp_path / "nowhere.png"
    out = tmp_path / "out"
    result = run_fit(image, "--checkpoint", ckpt, "--out", out, "--no-progress", *extra)
    assert result.exit_code != 0
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error:") and message in line, result.output
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_cli_refuses_bad_weights(drawn_project, tmp_path):
    result = run_fit(
        tmp_path, "--checkpoint", drawn_project / "models" / "dcign", "--out", tmp_path / "o", "--weight", "x"
    )
    assert result.exit_code == 2 and "GROUP=WEIGHT" in result.output


def test_tables_flatten_coefficients():
    rows = [fit_cli.flat_row("a", {"method": "code", "shape": [1.0, 2.0], "albedo": [3.0]}, {f: 0.0 for f in FACTORS})]
    text = fit_cli.csv_bytes(rows).decode().splitlines()
    assert text[0] == "image,method,shape_0,shape_1,albedo_0,true_azimuth,true_elevation,true_light"
    assert fit_results.finite({"x": float("inf"), "y": [np.float32(1.5)]}) == {"x": None, "y": [1.5]}


# --- Blender in the loop: the tiny project's model ------------------------------------------------
def test_fit_of_a_rendered_face_improves_on_its_start(tiny_eval, tmp_path):
    from dcign.checkpoint import load_model
    from render.faces.loaders import load_face_model

    root, _ = tiny_eval
    model, cfg, _ = load_model(root / "models" / "dcign")
    calib = C.load(root / "eval" / "calibration" / "dcign.npz", cfg.latent)
    faces = load_face_model("default")
    truth = Scene(40.0, 5.0, 30.0)
    space = fitting.SearchSpace({f: calib[f].range for f in FACTORS}, 0, 0)
    fcfg = fitting.FitConfig(budget=12, shape_components=0, albedo_components=0, seed=1)
    with SceneRenderer(faces, cfg.resolution, samples=2) as render:
        image = render([truth])[0]
        fit = fitting.fit_image(image, model, calib, render, space, fcfg, ("code", "pixel"))
        assert render.count == 1 + 12 + 12
        # The known answer: from a frontal start 40 degrees off, the pixel search finds the azimuth
        # (the 6-step model's code barely varies, so its read-out and code search are no better than a guess).
        frontal = fitting.search(
            fitting.PixelObjective(image), render, Scene(0.0, 0.0, 0.0), space, replace(fcfg, budget=40)
        )
    assert abs(frontal.scene.azimuth - truth.azimuth) < 15 and frontal.value < 0.5 * frontal.start_value
    rows = {r["method"]: r for r in fitting.fit_rows(fit, image, truth.as_dict())}
    assert set(rows) == {"amortised", "code", "pixel"} and rows["amortised"]["renders"] == 0
    for name in ("code", "pixel"):
        s = fit.searches[name]
        assert s.renders == 12 and s.value <= s.start_value and rows[name]["objective"] == s.value
        assert [t["best"] for t in s.trace] == sorted((t["best"] for t in s.trace), reverse=True)
    assert rows["pixel"]["psnr"] >= rows["amortised"]["psnr"] - 1e-9


def test_cli_fits_a_folder_and_resumes(tiny_eval, tmp_path):
    import cv2

    root, _ = tiny_eval
    folder = tmp_path / "faces"
    folder.mkdir()
    images = np.load(next((root / "data" / "test" / "azimuth").glob("shard-*.npz")))["images"][0]
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.resize(images[i], (32, 32)))  # another size: resized, noted
    out = tmp_path / "out"
    args = (folder, "--checkpoint", root / "models" / "dcign", "--budget", 6, "--objective", "both", "--out", out)
    first = run_fit(*args, "--samples", 1, "--no-progress")
    assert first.exit_code == 0, first.output
    assert "resized from 32x32 to 16x16" in first.output
    rows = json.loads((out / "fits.json").read_text())
    assert [(r["image"], r["method"]) for r in rows] == [
        (f"f{i}", m) for i in range(2) for m in ("amortised", "code", "pixel")
    ]
    assert all(r["renders"] == (0 if r["method"] == "amortised" else 6) for r in rows)
    assert (out / "images" / "f0.png").is_file() and (out / "trace.csv").is_file()
    (out / "results" / "f1.json").unlink()  # as if killed during the second image
    again = run_fit(*args, "--samples", 1, "--no-progress")
    assert again.exit_code == 0 and "1 of 2 images already fitted" in again.output
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    again_rows = json.loads((out / "fits.json").read_text())
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again_rows] == timeless  # deterministic


# --- the stage's deps list the code it runs ---------------------------------------------------------
def test_fit_stage_deps_list_the_code_it_runs():
    default_face_model = "render/faces/procedural.py"
    assert_deps_are_the_code("fit/dvc.yaml", "fit", "pipeline.inverse.stage", also=(default_face_model,))


def test_pixel_and_ssim_objectives_are_zero_at_the_image_only():
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 255, (16, 16), dtype=np.uint8) for _ in range(2))
    for name in ("pixel", "ssim"):
        values = fitting.make_objective(name, a)(np.stack([a, b]))
        assert values[0] == pytest.approx(0, abs=1e-12) and values[1] > 0.01
    with pytest.raises(fitting.FitError, match="unknown objective"):
        fitting.make_objective("l1", a)


def test_fit_stage_writes_its_summary_plots_and_results_table_and_resumes(tiny_eval, tmp_path):
    from pipeline.inverse import table as fit_table

    root, _ = tiny_eval
    params = write_tiny_params(tmp_path / "params.yaml")
    out, metrics = tmp_path / "fit", tmp_path / "fit.json"
    args = ["--params", params, "--checkpoint", root / "models" / "dcign", "--metrics", metrics, "--out", out]
    args = [str(a) for a in (*args, "--calibration", root / "eval" / "calibration" / "dcign.npz", "--no-progress")]
    r = CliRunner().invoke(fit_stage.main, args)
    assert r.exit_code == 0, r.output
    s = json.loads(metrics.read_text())
    assert (s["images"], s["budget"], s["resolution"]) == (2, 4, 16)
    assert [s[m]["renders_per_image"] for m in ("amortised", "code", "pixel")] == [0, 4, 4]
    faces = [json.loads(p.read_text()) for p in sorted((out / "results").glob("face-*.json"))]
    assert len(faces) == 2
    for method in ("amortised", "code", "pixel"):
        err = [row["error_azimuth"] for f in faces for row in f["rows"] if row["method"] == method]
        assert s[method]["azimuth"]["median_abs_error"] == pytest.approx(np.median(err))
    assert (out / "plots" / "errors.png").is_file() and (out / "plots" / "contact_sheet.png").is_file()

    (out / "results" / "face-0001.json").unlink()  # as if killed during the second face
    assert CliRunner().invoke(fit_stage.main, args).exit_code == 0
    again = json.loads(metrics.read_text())
    for method in ("amortised", "code", "pixel"):
        assert {k: v for k, v in again[method].items() if k != "seconds_per_image"} == {
            k: v for k, v in s[method].items() if k != "seconds_per_image"
        }

    doc = tmp_path / "results.md"
    doc.write_text("a\n<!-- fit:start -->\nold\n<!-- fit:end -->\nb\n")
    r = CliRunner().invoke(fit_table.main, ["--metrics", str(metrics), "--doc", str(doc)])
    assert r.exit_code == 0, r.output
    text = doc.read_text()
    pixel = s["pixel"]["azimuth"]
    assert "old" not in text and f"| {pixel['median_abs_error']:.1f} / {pixel['p90_abs_error']:.1f} |" in text
    check = CliRunner().invoke(fit_table.main, ["--metrics", str(metrics), "--doc", str(doc), "--check"])
    assert check.exit_code == 0


def test_budgets_and_sizes_are_bounded_before_any_work(tmp_path):
    face = write_png(tmp_path / "face.png", 16)
    for option, value in (("--budget", fitting.MAX_BUDGET + 1), ("--samples", 10**6)):
        r = run_fit(face, "--checkpoint", tmp_path / "none", option, value, "--out", tmp_path / "out")
        assert r.exit_code == 2 and option in r.output and not (tmp_path / "out").exists()
    p = load_params(ROOT / "params.yaml")
    for key, value in (("budget", 10**9), ("images", 10**9)):
        with pytest.raises(ParamsError, match=f"fit.{key} must be"):
            fit_stage.config_from_params({**p, "fit": {**p["fit"], key: value}})
