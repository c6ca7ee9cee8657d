"""``dcign-rerender``: re-render a face photo at a new azimuth, elevation or light angle.

``dcign-rerender --checkpoint models/dcign --image face.png --set azimuth=30 --set light=-45 -o out.png``

The image is turned grey (0.21 R + 0.72 G + 0.07 B, as the renders), resized to the model's
resolution, encoded; the latent group of every ``--set`` factor is replaced by the code for the
target angle, and the result is decoded and written (at the model's resolution, or ``--size``).

The code for a target angle comes from the calibration that ``dcign-evaluate`` fits on the
test sweeps and writes to ``eval/calibration/<model>.npz`` (see :mod:`pipeline.evaluation.calibration`):
the factor's latents (a DC-IGN's group, or a baseline's best single latent) are set to the
calibrated code for that angle. The same calibration is what the evaluation's re-rendering
score uses. Angles outside the calibrated range are refused: the model never saw them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.images import ImageError, encode_image, read_image
from render.atomic import atomic_write_bytes
from render.vocabulary import FACTORS

RANGE_TOL = 1e-6  # degrees; sweep angles are stored as float32
MAX_SIZE = 8192  # --size: the upscaled output, for viewing


class RerenderError(ValueError):
    """A calibration or edit that cannot be used (message names it)."""


# --- editing ---------------------------------------------------------------------------------------
def code_for_angle(calibration: C.Calibration, factor: str, angle: float) -> np.ndarray:
    """The factor's latents' code at ``angle`` degrees (refused outside the calibrated range)."""
    if factor not in calibration:
        known = ", ".join(calibration) or "none"
        raise RerenderError(f"{factor}: no calibration for this factor (calibrated: {known})")
    lo, hi = calibration[factor].range
    if not (lo - RANGE_TOL <= angle <= hi + RANGE_TOL):
        raise RerenderError(f"{factor}={angle:g} is outside the calibrated (test sweep) range [{lo:g}, {hi:g}] degrees")
    return calibration[factor].code(angle)


def rerender(model, image: np.ndarray, edits: dict[str, float], calibration: C.Calibration) -> np.ndarray:
    """Encode a uint8 grey (R, R) image, set each edited factor's latents to its angle's code, decode.

    Returns uint8 (R, R). Without edits this is the model's reconstruction of the image.
    """
    from pipeline.evaluation.encode import decode, encode

    r = model.config.resolution
    if image.shape != (r, r) or image.dtype != np.uint8:
        raise RerenderError(f"expected a uint8 ({r}, {r}) image, got {image.dtype} {image.shape}")
    mu, _ = encode(model, image[None])  # (1, D)
    z = mu.astype(np.float64)
    for factor, angle in edits.items():
        if factor not in FACTORS:
            raise RerenderError(f"unknown factor {factor!r} (expected one of {', '.join(FACTORS)})")
        code = code_for_angle(calibration, factor, float(angle))
        z[0, calibration[factor].latents] = code
    out = decode(model, z.astype(np.float32))[0]  # (R, R) in [0, 1]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


# --- the command ----------------------------------------------------------------------------------
def parse_edits(items: tuple[str, ...]) -> dict[str, float]:
    edits: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise click.BadParameter(f"expected FACTOR=DEGREES, got {item!r}", param_hint="--set")
        if name not in FACTORS:
            raise click.BadParameter(
                f"unknown factor {name!r} in {item!r} (expected one of {', '.join(FACTORS)})", param_hint="--set"
            )
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise click.BadParameter(f"{item!r}: {text.strip()!r} is not a number of degrees", param_hint="--set")
        if name in edits:
            raise click.BadParameter(f"{name} is set twice", param_hint="--set")
        edits[name] = value
    return edits


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="Trained model directory (or its model.safetensors).",
)
@click.option(
    "--image",
    "image_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Input face image (any size; colour is converted to grey).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FACTOR=DEGREES",
    help="Target angle in degrees, as the renders (azimuth 0 = frontal): azimuth, elevation or light "
    "(repeatable). None: plain reconstruction.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Calibration .npz from dcign-evaluate. Default: eval/calibration/<model dir name>.npz "
    "in an ancestor of the checkpoint.",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output image (.png).",
)
@click.option(
    "--size",
    type=click.IntRange(1, MAX_SIZE),
    default=None,
    help="Upscale the output to SIZE x SIZE pixels for viewing (default: model resolution).",
)
def main(checkpoint, image_path, sets, calibration, out_path, size):
    """Re-render a face image with new azimuth / elevation / light angles."""
    edits = parse_edits(sets)
    if not out_path.parent.is_dir():  # before the model loads: the answer would have nowhere to go
        raise click.BadParameter(f"{out_path}: the folder {out_path.parent} does not exist", param_hint="--out")
    # torch loads only once the arguments parse, so --help and --set errors are quick.
    from dcign.checkpoint import CheckpointError, load_model

    try:
        model, cfg, _ = load_model(checkpoint)
    except CheckpointError as e:
        raise click.ClickException(str(e)) from None
    try:
        image = read_image(image_path, cfg.resolution)
        table: C.Calibration = {}
        if edits:
            if calibration is None:
                calibration = C.default_calibration(checkpoint)
            if calibration is None:
                raise RerenderError(
                    f"no eval/calibration/{_model_name(checkpoint)}.npz found above {checkpoint}; "
                    "pass --calibration (a calibration file written by dcign-evaluate)"
                )
            table = C.load(calibration, cfg.latent)
        out = rerender(model, image, edits, table)
        if size is not None and size != out.shape[0]:
            import cv2

            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_CUBIC)
        data = encode_image(out, out_path.suffix.lower() or ".png")
        atomic_write_bytes(out_path, data)
    except (RerenderError, ImageError, C.CalibrationError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out_path}: {e.strerror or e}") from None
    desc = ", ".join(f"{k}={v:g}" for k, v in edits.items()) or "reconstruction"
    print(f"{out_path}: {desc} ({cfg.resolution}px model, calibration {calibration or '-'})", file=sys.stderr)


def _model_name(checkpoint: Path) -> str:
    p = checkpoint.resolve()
    return (p if p.is_dir() else p.parent).name


if __name__ == "__main__":
    main()
