"""dcign-explore: slider values -> code -> image, degree labels, errors, Blender beside the decoder, the browser.

The fast tests use a drawn (untrained) network and calibrations fitted by ``pipeline.evaluation.calibration``;
the tests marked slow use the tiny project of conftest.py (rendered by Blender, trained by the
trainer, calibrated by the evaluation stage), and the browser test drives the page in Debian's
headless Chromium through Selenium (skipped, with the reason, where they are not installed).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.evaluation import calibration as C
from pipeline.explorer import ExploreError
from pipeline.explorer import explorer as E
from pipeline.explorer.page import build_app, launch
from render.scene_renderer import Scene
from render.vocabulary import FACTORS

RANGES = {"azimuth": (-90.0, 90.0), "elevation": (-23.0, 23.0), "light": (-80.0, 80.0)}
RES = 16


def drawn_model(resolution=RES, latent=6):
    from dcign.config import ModelConfig
    from dcign.model import DCIGN

    torch.manual_seed(0)
    cfg = ModelConfig(resolution=resolution, filters=(4, 4, 4), latent=latent, conv_init="he", init_std=0.1)
    return DCIGN(cfg.validate()).eval()


def linear_calibration(latents: dict[str, int]) -> C.Calibration:
    """Each factor's latent equal to angle / half its range (fitted by the calibration code)."""
    out = {}
    for f, (lo, hi) in RANGES.items():
        angles = np.linspace(lo, hi, 40)
        codes = np.zeros((40, 6))
        codes[:, latents[f]] = angles / hi
        out[f] = C.fit_factor(codes, angles, [latents[f]], span=(lo, hi))
    return out


def loaded(name="dcign", grouped=True, latents=None, resolution=RES) -> E.LoadedModel:
    latents = latents or {"azimuth": 0, "elevation": 1, "light": 2}
    return E.LoadedModel(
        name, Path(name), drawn_model(resolution), linear_calibration(latents), "dcign" if grouped else "vae", grouped
    )


# --- pure functions ---------------------------------------------------------------------------------
def test_slider_degrees_set_each_factors_latents_to_the_calibrated_code():
    cal = linear_calibration({"azimuth": 0, "elevation": 1, "light": 2})
    mu = np.full(6, 0.25)
    code = E.slider_code(mu, cal, {"azimuth": 45.0, "elevation": -23.0, "light": 0.0}, {4: -1.5})
    expected = [cal["azimuth"].code(45.0)[0], cal["elevation"].code(-23.0)[0], 0.0]
    np.testing.assert_allclose(code[:3], expected, atol=1e-9)
    assert code[0] == pytest.approx(0.5, abs=0.02)  # 45 of 90 degrees on the linear latent
    assert code[4] == -1.5 and code[3] == code[5] == 0.25  # the other latents keep the face's code
    beyond = E.slider_code(mu, cal, {"azimuth": 400.0})  # clamped to the calibrated range
    np.testing.assert_allclose(beyond[0], cal["azimuth"].code(90.0)[0])
    assert mu[0] == 0.25  # the face's code is not changed in place


def test_a_baselines_slider_moves_its_best_single_latent_only():
    lm = loaded("baseline", grouped=False, latents={"azimuth": 4, "elevation": 1, "light": 5})
    mu = np.zeros(6)
    code = E.slider_code(mu, lm.calibration, {"azimuth": 90.0})
    assert np.flatnonzero(code).tolist() == [4]
    assert E.intrinsic_latents(lm) == [0, 2, 3]  # the latents no factor's calibration uses
    assert E.intrinsic_latents(loaded()) == [3, 4, 5]  # the DC-IGN's intrinsic group


def test_slider_value_to_image_decodes_a_different_face_and_the_same_one_again():
    lm = loaded()
    mu = np.zeros(6)
    images = [E.decode_code(lm.model, E.slider_code(mu, lm.calibration, {"azimuth": a})) for a in (-90, 90, -90)]
    assert images[0].shape == (RES, RES) and images[0].dtype == np.uint8
    assert not np.array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[0], images[2])


def test_degree_labels_come_from_the_calibration_both_ways():
    cal = linear_calibration({"azimuth": 0, "elevation": 1, "light": 2})
    code = E.slider_code(np.zeros(6), cal, {"azimuth": 30.0})
    assert E.degree_label("azimuth", cal["azimuth"], code) == "azimuth z0 = +0.33 (reads as 30.0°)"
    assert E.slider_label("light", cal["light"]) == "Light: z2 (degrees, calibrated over -80.0° .. 80.0°)"
    assert E.scene_label(Scene(12.0, -3.25, 40.0)) == "azimuth 12.0°, elevation -3.2°, light 40.0°"


def test_view_labels_show_the_render_angles_and_the_comparison():
    scene = Scene(45.0, 0.0, -10.0)
    image = np.full((RES, RES), 100, np.uint8)
    view = E.View(np.zeros(6), image, scene, image, E.compare(image, image), {"decode": 0.004, "render": 0.03})
    assert view.render_label() == "Blender render at azimuth 45.0°, elevation 0.0°, light -10.0°"
    assert view.metrics_label() == "Decoded vs rendered: PSNR inf dB, SSIM 1.000 (decode 4 ms, render 30 ms)"
    upload = E.View(np.zeros(6), image, None, None, None, {"decode": 0.004})
    assert "no known scene" in upload.render_label() and upload.metrics_label() == "Decoded only (decode 4 ms)."


def test_upload_that_is_not_an_image_is_refused_and_another_size_is_resized_with_a_note(tmp_path):
    import cv2

    notes = tmp_path / "notes.png"
    notes.write_text("not pixels")
    with pytest.raises(ExploreError, match=r"^upload notes.png: not an image OpenCV can decode"):
        E.read_upload(notes, RES)
    cv2.imwrite(str(tmp_path / "face.png"), np.full((40, 30, 3), 90, np.uint8))
    face = E.read_upload(tmp_path / "face.png", RES)
    assert face.image.shape == (RES, RES) and face.scene is None
    assert face.note == "face.png: resized from 30x40 to the model's 16x16 (and turned grey, as the renders)"


def test_a_model_of_another_resolution_is_refused_with_its_path():
    with pytest.raises(ExploreError, match=r"^wide: trained at 32x32, but this explorer shows 16x16 faces"):
        E.Explorer({"dcign": loaded(), "wide": loaded("wide", resolution=32)}, renderer=None, face_model=None)
    explorer = E.Explorer({"dcign": loaded()}, renderer=None, face_model=None)
    with pytest.raises(ExploreError, match="trained at 32x32"):
        explorer.add(loaded("wide", resolution=32))
    assert list(explorer.models) == ["dcign"]
    with pytest.raises(ExploreError, match="no model named 'nope'"):
        explorer.model("nope")


def test_traversal_gif_has_one_frame_per_step_decoded_beside_rendered(tmp_path):
    from PIL import Image

    class FlatRenderer:  # stands in for Blender: the scene's azimuth as the grey level
        def render(self, scenes):
            return np.stack([np.full((RES, RES), int(s.azimuth) + 100, np.uint8) for s in scenes])

    explorer = E.Explorer({"dcign": loaded()}, FlatRenderer(), face_model=None)
    face = E.Face("test", np.zeros((RES, RES), np.uint8), Scene(0.0, 0.0, 0.0))
    angles = dict.fromkeys(FACTORS, 0.0)
    frames = explorer.traverse("dcign", face, np.zeros(6), angles, {}, "azimuth")
    assert [f[0] for f in frames][:2] == ["azimuth -90.0°", "azimuth -73.6°"] and len(frames) == E.TRAVERSE_FRAMES
    assert [int(f[2][0, 0]) for f in (frames[0], frames[-1])] == [10, 190]  # rendered at each frame's angle
    path = E.write_gif(frames, tmp_path / "t.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == E.TRAVERSE_FRAMES and gif.size == (2 * RES * 3 + 4, RES * 3 + 22)
    intrinsic = explorer.traverse("dcign", face, np.zeros(6), angles, {}, "z4")
    assert intrinsic[0][0] == "z4 -3.0" and intrinsic[0][2] is None  # no scene variable to render
    with pytest.raises(ExploreError, match="z1: not one of the intrinsic sliders"):
        explorer.traverse("dcign", face, np.zeros(6), angles, {}, "z1")


# --- the tiny project: checkpoints from the trainer, calibrations from the evaluation ---------------
def explore_cli(*args):
    from pipeline.explorer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(
    "case, message",
    [
        ("checkpoint", "nowhere: cannot read checkpoint"),
        ("calibration", "outside the model's 6 latents (calibration of another model?)"),
        ("unreadable_calibration", "garbage.npz: unreadable calibration file"),
        ("test_data", "no rendered test sweep"),
        ("port", "cannot serve there (Address already in use); choose another --port"),
    ],
)
def test_cli_errors_are_one_line_naming_the_file(tiny_eval, tmp_path, case, message):
    pytest.importorskip("gradio", reason="dcign-explore needs the explore extra")
    root, _ = tiny_eval
    from pipeline.explorer.browser import free_port

    args = ["--checkpoint", root / "models" / "dcign", "--no-baseline", "--port", free_port()]
    if case == "checkpoint":
        args[1] = tmp_path / "nowhere"
    elif case == "calibration":
        other = {f: C.fit_factor(np.zeros((4, 10)) + np.arange(4)[:, None], np.arange(4.0), [9]) for f in FACTORS}
        C.save(tmp_path / "other.npz", other)
        args += ["--calibration", tmp_path / "other.npz"]
    elif case == "unreadable_calibration":
        (tmp_path / "garbage.npz").write_bytes(b"PK not a zip")
        args += ["--calibration", tmp_path / "garbage.npz"]
    elif case == "test_data":
        args += ["--test-data", tmp_path]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if case == "port":
            args[-1] = taken.getsockname()[1]
        result = explore_cli(*args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


@pytest.fixture(scope="module")
def explorer(tiny_eval):
    """The tiny project's DC-IGN and baseline, its test sweeps and a Blender worker."""
    root, _ = tiny_eval
    models = root / "models"
    with E.opened(models / "dcign", None, models / "baseline", None, root / "data" / "test") as ex:
        yield ex


def test_a_test_face_renders_as_its_shard_at_its_own_angles_and_follows_the_slider(explorer):
    face = explorer.test_face("azimuth", 1)
    assert face.scene is not None and len(face.scene.shape) == explorer.face_model.n_shape
    mu = explorer.encode("dcign", face)
    start = explorer.start_values("dcign", face, mu)
    assert start["angles"]["azimuth"] == pytest.approx(face.scene.azimuth, abs=0.05)
    at_start = explorer.view("dcign", face, mu, start["angles"], start["intrinsic"])
    # the same face, scene and settings as the renderer that wrote the shard: Blender draws the test image again
    assert E.compare(at_start.rendered, face.image)["psnr"] > 40
    turned = explorer.view("dcign", face, mu, {**start["angles"], "azimuth": 60.0}, start["intrinsic"])
    assert turned.scene.azimuth == 60.0 and "azimuth 60.0°" in turned.render_label()
    assert not np.array_equal(turned.rendered, at_start.rendered)
    assert set(turned.metrics) == {"psnr", "ssim"} and np.isfinite(turned.metrics["psnr"])


def test_the_baseline_moves_the_latent_its_calibration_chose(explorer):
    base = explorer.model("baseline")
    assert base.method == "vae" and not base.grouped
    face = explorer.random_face(3)
    assert face.scene is not None and face.image.shape == (RES, RES)
    mu = explorer.encode("baseline", face)
    view = explorer.view("baseline", face, mu, {"azimuth": 90.0, "elevation": 0.0, "light": 0.0}, {})
    chosen = {int(i) for f in FACTORS for i in base.calibration[f].latents}
    changed = set(np.flatnonzero(~np.isclose(view.code, mu)).tolist())
    assert changed <= chosen
    assert "reads as" in explorer.code_label("baseline", view.code)


def test_test_images_of_another_resolution_are_refused_with_the_folder(tiny_eval):
    root, _ = tiny_eval
    faces = E.TestFaces(root / "data" / "test")
    with pytest.raises(ExploreError, match=r"test/azimuth: rendered at 16x16 but the model was trained at 64x64"):
        faces.face("azimuth", 0, 64)
    with pytest.raises(ExploreError, match=r"image 99 does not exist \(4 images: 0..3\)"):
        faces.face("azimuth", 99, RES)


# --- in a real browser ------------------------------------------------------------------------------
def _browser_skip() -> str | None:
    from pipeline.explorer.browser import missing_browser

    return missing_browser()


@pytest.fixture(scope="module")
def page(explorer):
    from pipeline.explorer.browser import Page, chrome, free_port

    demo = build_app(explorer)
    url = launch(demo, port=free_port())
    try:
        with chrome() as driver:
            yield Page(driver, url)
    finally:
        demo.close()


@pytest.mark.slow
@pytest.mark.skipif(_browser_skip() is not None, reason=f"no browser for the explorer: {_browser_skip()}")
def test_moving_the_azimuth_slider_changes_the_decoded_image_and_renders_at_its_angle(page, explorer):
    from selenium.webdriver.common.keys import Keys

    from pipeline.explorer.browser import image_bytes

    page.open()
    assert page.text("render-label").startswith("Blender render at azimuth")
    before = page.image_src("decoded-image")
    page.press("azimuth", Keys.END)  # the keyboard's way to the slider's end
    top = explorer.model("dcign").calibration["azimuth"].range[1]
    page.wait(lambda: page.slider_value("azimuth") == top, "the slider at its end")
    label = page.wait_text("render-label", f"azimuth {top:.1f}°")
    assert label.startswith(f"Blender render at azimuth {top:.1f}°")
    after = page.wait_image_change("decoded-image", before)
    assert image_bytes(after) != image_bytes(before)
    assert "PSNR" in page.text("metrics") and page.message() == ""


@pytest.mark.slow
@pytest.mark.skipif(_browser_skip() is not None, reason=f"no browser for the explorer: {_browser_skip()}")
def test_a_bad_upload_and_a_bad_checkpoint_get_messages_and_the_page_keeps_serving(page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    notes = tmp_path / "notes.png"
    notes.write_text("not pixels")
    page.open()
    page.driver.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='Upload']").click()
    page.driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(notes))
    page.wait(lambda: "not an image" in page.message(), "the upload's message")
    assert page.message() == "upload notes.png: not an image OpenCV can decode"
    page.click("another-checkpoint")
    path_box = "#checkpoint-path textarea"  # shown by the click's page update, not at once
    page.wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, path_box), "the checkpoint path box")
    page.driver.find_element(By.CSS_SELECTOR, path_box).send_keys(str(tmp_path / "nowhere"))
    page.click("load-checkpoint")
    page.wait(lambda: "cannot read checkpoint" in page.message(), "the checkpoint's message")
    assert page.message().startswith(f"{tmp_path / 'nowhere'}: cannot read checkpoint")
    before = page.image_src("decoded-image")
    page.press("azimuth", Keys.END)  # still serving: the slider still answers
    page.wait_image_change("decoded-image", before)


@pytest.mark.slow
@pytest.mark.skipif(_browser_skip() is not None, reason=f"no browser for the explorer: {_browser_skip()}")
def test_choosing_the_baseline_puts_its_calibrated_latents_under_the_sliders(page, explorer):
    base = explorer.model("baseline").calibration["azimuth"].latents
    page.open()
    assert page.value("code").startswith("azimuth z0 = ")  # the DC-IGN's azimuth group
    page.choose("model", "baseline")
    want = "azimuth " + ", ".join(f"z{int(i)} = " for i in base)
    page.wait(
        lambda: "baseline (vae) reads it as" in page.text("face-info") and page.value("code").startswith(want),
        "the baseline's reading and code",
    )
    assert page.message() == ""
