"""``dcign-rerender``: re-render a face photo at a new azimuth, elevation or light angle.

``dcign-rerender --checkpoint models/dcign --image face.png --set azimuth=30 --set light=-45 -o out.png``

The image is turned grey (0.21 R + 0.72 G + 0.07 B, as the renders), resized to the model's
resolution, encoded; the latent group of every ``--set`` factor is replaced by the code for the
target angle, and the result is decoded and written (at the model's resolution, or ``--size``).

The code for a target angle comes from the calibration that ``dcign-evaluate`` fits on the
test sweeps and writes to ``eval/calibration/<model>.npz`` (see :mod:`pipeline.calibration`):
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

from pipeline import calibration as C
from render.atomic import atomic_write_bytes
from render.vocabulary import FACTORS, GREY_WEIGHTS

RANGE_TOL = 1e-6  # degrees; sweep angles are stored as float32
MAX_IMAGE_PIXELS = 1 << 26  # 64 megapixels: larger than any camera's photo
MAX_SIZE = 8192  # --size: the upscaled output, for viewing


class RerenderError(ValueError):
    """An image, calibration or edit that cannot be used (message names it)."""


# --- image in / out --------------------------------------------------------------------------------
def to_grey(image: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded image (grey, BGR, BGRA; 8 or 16 bit) -> uint8 grey (H, W)."""
    img = image.astype(np.float32)
    if image.dtype == np.uint16:
        img /= 257.0
    elif image.dtype != np.uint8:
        raise RerenderError(f"unsupported pixel type {image.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:  # transparent areas become black, like the renders' dark background
        img = img[..., :3] * (img[..., 3:] / 255.0)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1] @ GREY_WEIGHTS  # OpenCV decodes BGR
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim != 2:
        raise RerenderError(f"unsupported image shape {image.shape}")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height an image file's header declares, read before decoding.

    (0, 0) when the format is unknown to Pillow; None when the header declares more pixels than
    Pillow's own decompression-bomb limit (2 x 89 M, more than MAX_IMAGE_PIXELS too).

    OpenCV allocates what the header declares: a few bytes claiming 60000 x 60000 would ask for
    gigabytes, or fail deep inside OpenCV. Pillow reads only the header on open (PNG, JPEG, BMP,
    TIFF, WebP, ...); a file it does not recognise is left to OpenCV.
    """
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError:
            return None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return 0, 0


def read_image(path: str | Path, resolution: int) -> np.ndarray:
    """Read an image file -> uint8 grey (resolution, resolution), resized with INTER_AREA."""
    return resize(decode_image(path), resolution)


def resize(grey: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 grey (H, W) -> (resolution, resolution): INTER_AREA averages when shrinking.

    Non-square images are stretched, as the model is square.
    """
    import cv2

    if grey.shape == (resolution, resolution):
        return grey
    return cv2.resize(grey, (resolution, resolution), interpolation=cv2.INTER_AREA)


def decode_image(path: str | Path) -> np.ndarray:
    """Read an image file -> uint8 grey (H, W) at its own size; RerenderError naming the file if it is none."""
    import cv2

    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a named pipe that would block the read
        raise RerenderError(f"{path}: not a regular file")
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as e:
        raise RerenderError(f"{path}: cannot read image ({e.strerror or e})") from None
    size = declared_size(data.tobytes())
    if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
        declared = "an image" if size is None else f"a {size[0]}x{size[1]} image"
        raise RerenderError(f"{path}: {declared} larger than {MAX_IMAGE_PIXELS} pixels (no photo of a face is)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # OpenCV's own limits (2^30 pixels) and corrupt streams
        first = (str(e).strip().splitlines() or ["cv2.error"])[-1].strip()
        raise RerenderError(f"{path}: not an image OpenCV can decode ({first[:120]})") from None
    if image is None:
        raise RerenderError(f"{path}: not an image OpenCV can decode")
    try:
        grey = to_grey(image)
    except RerenderError as e:
        raise RerenderError(f"{path}: {e}") from None
    return grey


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    import cv2

    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        raise RerenderError(f"OpenCV cannot write {ext} images")
    return buf.tobytes()


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
    from pipeline.encode import decode, encode

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


def default_calibration(checkpoint: Path) -> Path | None:
    """``eval/calibration/<model dir name>.npz`` in the nearest ancestor of the checkpoint that has one.

    ``models/dcign`` -> ``eval/calibration/dcign.npz``, as the DVC evaluate stage writes it.
    """
    ckpt = checkpoint.resolve()
    model_dir = ckpt if ckpt.is_dir() else ckpt.parent
    name = f"{model_dir.name}.npz"
    for root in model_dir.parents:
        candidate = root / "eval" / "calibration" / name
        if candidate.is_file():
            return candidate
    return None


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
                calibration = default_calibration(checkpoint)
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
    except (RerenderError, C.CalibrationError) as e:
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
