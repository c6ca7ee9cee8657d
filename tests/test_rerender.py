"""dcign-rerender: calibration from evaluation latents, edits, the CLI and its errors."""

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dcign.checkpoint import load_model, save_checkpoint
from dcign.config import ModelConfig, TrainConfig
from dcign.model import DCIGN
from pipeline.rerender import RerenderError, load_calibration, main, rerender

RES = 16
GRID = {"azimuth": [-90.0, 0.0, 90.0], "elevation": [-20.0, 0.0, 20.0], "light": [-80.0, 0.0, 80.0]}


def write_latents(path: Path, latent: int = 6) -> None:
    """A latents file as dcign-evaluate writes it: group codes follow the angles (code = angle / 30)."""
    rows = list(itertools.product(range(2), *(range(len(v)) for v in GRID.values())))
    idx = np.array(rows)
    flat = {f: np.array(GRID[f], np.float32)[idx[:, k + 1]] for k, f in enumerate(GRID)}
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 0.1, size=(len(rows), latent)).astype(np.float32)
    for k, f in enumerate(GRID):  # groups: azimuth 0, elevation 1, light 2, intrinsic 3..
        mu[:, k] = flat[f] / 30.0
    np.savez(
        path,
        mu=mu,
        logvar=np.zeros_like(mu),
        factor_indices=idx,
        factor_names=np.array(["identity", *GRID]),
        factor_sizes=np.array([2, *(len(v) for v in GRID.values())]),
        identity=idx[:, 0],
        **flat,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """An untrained tiny model in models/dcign and its latents in eval/latents/dcign.npz (DVC layout)."""
    root = tmp_path_factory.mktemp("project")
    torch.manual_seed(0)
    # init_std=0 keeps PyTorch's default init, so codes visibly change the decoded image.
    mcfg = ModelConfig(resolution=RES, filters=(4, 4, 4), latent=6, init_std=0.0)
    cfg = TrainConfig(steps=1, model=mcfg)
    model = DCIGN(mcfg)
    (root / "models" / "dcign").mkdir(parents=True)
    save_checkpoint(root / "models" / "dcign", model, torch.optim.Adam(model.parameters()), cfg, 0, {})
    (root / "baseline").mkdir()
    save_checkpoint(root / "baseline", model, torch.optim.Adam(model.parameters()), cfg, 0, {"entangled": True})
    (root / "eval" / "latents").mkdir(parents=True)
    write_latents(root / "eval" / "latents" / "dcign.npz")
    # A colour, non-square input photo.
    yy, xx = np.mgrid[0:40, 0:30]
    face = np.stack([xx * 8, yy * 6, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    cv2.imwrite(str(root / "face.png"), face)
    (root / "notes.png").write_text("not an image")
    return root


def run(project: Path, *args: str):
    return CliRunner().invoke(main, ["--checkpoint", str(project / "models" / "dcign"), *args])


def test_load_calibration_means_and_interpolation(project):
    model, _, _ = load_model(project / "models" / "dcign")
    cal = load_calibration(project / "eval" / "latents" / "dcign.npz", model.groups)
    assert set(cal) == {"azimuth", "elevation", "light"}
    angles, codes = cal["azimuth"]
    np.testing.assert_allclose(angles, [-90, 0, 90])
    np.testing.assert_allclose(codes[:, 0], [-3, 0, 3], atol=1e-6)
    img = cv2.imread(str(project / "face.png"), cv2.IMREAD_GRAYSCALE)
    img = cv2.resize(img, (RES, RES), interpolation=cv2.INTER_AREA)
    a = rerender(model, img, {"azimuth": -90}, cal)
    b = rerender(model, img, {"azimuth": 45}, cal)
    assert a.shape == (RES, RES) and a.dtype == np.uint8 and not np.array_equal(a, b)
    with pytest.raises(RerenderError, match=r"azimuth=95 is outside the calibrated .*\[-90, 90\]"):
        rerender(model, img, {"azimuth": 95}, cal)
    with pytest.raises(RerenderError, match="latents"):
        load_calibration(project / "eval" / "latents" / "dcign.npz", {**model.groups, "intrinsic": slice(3, 9)})


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
        str(project / "eval" / "latents" / "dcign.npz"),
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
        (["--set", "azimuth=120"], "azimuth=120 is outside the calibrated (trained) range [-90, 90]"),
        (["--set", "elevation=-30"], "elevation=-30 is outside the calibrated (trained) range [-20, 20]"),
        (["--image", "missing.png"], "missing.png: cannot read image"),
        (["--image", "notes.png"], "notes.png: not an image"),
        (["--checkpoint", "nowhere"], "nowhere: cannot read checkpoint"),
        (["--checkpoint", "corrupt"], "corrupt/model.safetensors: not a safetensors file"),
        (["--calibration", "face.png"], "face.png: unreadable calibration file"),
        (["--checkpoint", "baseline"], "entangled baseline has no factor groups"),
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
