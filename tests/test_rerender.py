"""dcign-rerender: edits through the evaluation's calibration, the CLI and its errors.

Checkpoints come from the trainer and calibrations from the evaluation stage (the tiny project of
conftest.py); the input photo is a rendered test image, upscaled and tinted to colour.
"""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dcign.checkpoint import load_model
from pipeline.evaluation import calibration as C
from pipeline.review.rerender import RerenderError, main, rerender
from render.shards import load_sweep_dir

RES = 16


@pytest.fixture(scope="module")
def project(tiny_eval, tmp_path_factory) -> Path:
    """The evaluated tiny project (models/, eval/calibration/) plus a colour, non-square input photo."""
    root, _ = tiny_eval
    work = tmp_path_factory.mktemp("rerender")
    for sub in ("models", "eval"):
        shutil.copytree(root / sub, work / sub)
    grey = load_sweep_dir(root / "data" / "test" / "azimuth")["images"][0, 0]
    big = cv2.resize(grey, (30, 40), interpolation=cv2.INTER_CUBIC)
    face = np.stack([big, big // 2, np.full_like(big, 90)], axis=-1)  # BGR
    cv2.imwrite(str(work / "face.png"), face)
    (work / "notes.png").write_text("not an image")
    return work


def run(project: Path, *args: str):
    return CliRunner().invoke(main, ["--checkpoint", str(project / "models" / "dcign"), *args])


def test_edits_follow_the_calibration_and_refuse_angles_outside_it(project):
    model, cfg, _ = load_model(project / "models" / "dcign")
    cal = C.load(project / "eval" / "calibration" / "dcign.npz", cfg.latent)
    assert set(cal) == {"azimuth", "elevation", "light"} and cal["azimuth"].range == (-90.0, 90.0)
    img = cv2.resize(cv2.imread(str(project / "face.png"), cv2.IMREAD_GRAYSCALE), (RES, RES))
    a = rerender(model, img, {"azimuth": -90}, cal)
    b = rerender(model, img, {"azimuth": 90}, cal)
    assert a.shape == (RES, RES) and a.dtype == np.uint8
    np.testing.assert_allclose(cal["azimuth"].code(-90), cal["azimuth"].codes[0])
    if not np.allclose(cal["azimuth"].codes[0], cal["azimuth"].codes[-1]):
        assert not np.array_equal(a, b)
    with pytest.raises(RerenderError, match=r"azimuth=95 is outside the calibrated .*\[-90, 90\]"):
        rerender(model, img, {"azimuth": 95}, cal)


def test_cli_edits_write_model_resolution_png(project, tmp_path):
    outs = {}
    for angle in ("-90", "60"):
        out = tmp_path / f"az{angle}.png"
        r = run(
            project,
            "--image",
            str(project / "face.png"),
            "--set",
            f"azimuth={angle}",
            "--set",
            "light=-45",
            "-o",
            str(out),
        )
        assert r.exit_code == 0, r.output
        outs[angle] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert outs[angle].shape == (RES, RES)
    assert not np.array_equal(outs["-90"], outs["60"])
    # Explicit --calibration and upscaling for viewing.
    out = tmp_path / "big.png"
    r = run(
        project,
        "--image",
        str(project / "face.png"),
        "--set",
        "elevation=10",
        "--calibration",
        str(project / "eval" / "calibration" / "dcign.npz"),
        "--size",
        "48",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["az-90.png", "az60.png", "big.png"]  # no temp files left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "zoom=3"], "unknown factor 'zoom'"),
        (["--set", "azimuth"], "expected FACTOR=DEGREES"),
        (["--set", "azimuth=left"], "'left' is not a number"),
        (["--set", "azimuth=120"], "azimuth=120 is outside the calibrated (test sweep) range [-90, 90]"),
        (["--set", "elevation=-30"], "elevation=-30 is outside the calibrated (test sweep) range [-23, 23]"),
        (["--image", "missing.png"], "missing.png: cannot read image"),
        (["--image", "notes.png"], "notes.png: not an image"),
        (["--checkpoint", "nowhere"], "nowhere: cannot read checkpoint"),
        (["--checkpoint", "corrupt"], "corrupt/model.safetensors: not a safetensors file"),
        (["--calibration", "face.png"], "face.png: unreadable calibration file"),
        (["--calibration", "eval/latents/dcign.npz"], "dcign.npz: not a calibration file"),
    ],
)
def test_cli_errors_name_the_problem_and_write_nothing(project, tmp_path, args, message):
    (project / "corrupt").mkdir(exist_ok=True)
    (project / "corrupt" / "model.safetensors").write_bytes(b"\x00" * 4)
    opts = {"--image": str(project / "face.png"), "--set": "azimuth=30"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        opts[flag] = value if flag == "--set" else str(project / value)
    out = tmp_path / "out.png"
    r = run(project, *(a for kv in opts.items() for a in kv), "-o", str(out))  # a later --checkpoint wins
    assert r.exit_code != 0
    assert message in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_needs_calibration_when_none_is_found(project, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    for f in (project / "models" / "dcign").iterdir():
        (lone / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out.png"
    r = CliRunner().invoke(
        main, ["--checkpoint", str(lone), "--image", str(project / "face.png"), "--set", "azimuth=0", "-o", str(out)]
    )
    assert r.exit_code != 0 and "pass --calibration" in r.output and not out.exists()
    # No edits: a plain reconstruction needs no calibration.
    r = CliRunner().invoke(main, ["--checkpoint", str(lone), "--image", str(project / "face.png"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (RES, RES)


def test_the_baseline_is_edited_through_its_chosen_latents(project, tmp_path):
    out = tmp_path / "b.png"
    r = CliRunner().invoke(
        main,
        ["--checkpoint", str(project / "models" / "baseline"), "--image", str(project / "face.png")]
        + ["--set", "light=40", "-o", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert "calibration" in r.output and cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (RES, RES)
