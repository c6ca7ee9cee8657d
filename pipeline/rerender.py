"""``dcign-rerender``: re-render a face photo at a new azimuth, elevation or light angle.

``dcign-rerender --checkpoint models/dcign --image face.png --set azimuth=30 --set light=-45 -o out.png``

The image is turned grey (0.21 R + 0.72 G + 0.07 B, as the renders), resized to the model's
resolution, encoded; the latent group of every ``--set`` factor is replaced by the code for the
target angle, and the result is decoded and written (at the model's resolution, or ``--size``).

Calibration (angle -> group code) comes from a latents file written by ``dcign-evaluate``
(``eval/latents/<model>.npz``: grid latent means ``mu`` and per-image angles in degrees).
For each factor it holds the sorted grid angles and, at each, the mean code of the factor's
group over the grid images at that angle; codes between grid angles are linearly interpolated
per latent dimension (``np.interp``). The same per-angle mean codes are what the evaluation's
re-rendering score uses. Angles outside the calibrated grid range are refused: the model never
saw them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
import numpy as np

from render.shards import GREY_WEIGHTS

FACTORS = ("azimuth", "elevation", "light")  # the factors with an angle (identity has none)
RANGE_TOL = 1e-6  # degrees; grid angles are stored as float32

Calibration = dict[str, tuple[np.ndarray, np.ndarray]]


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


def read_image(path: str | Path, resolution: int) -> np.ndarray:
    """Read an image file -> uint8 grey (resolution, resolution), resized with INTER_AREA."""
    import cv2

    path = Path(path)
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as e:
        raise RerenderError(f"{path}: cannot read image ({e.strerror or e})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise RerenderError(f"{path}: not an image OpenCV can decode")
    try:
        grey = to_grey(image)
    except RerenderError as e:
        raise RerenderError(f"{path}: {e}") from None
    # INTER_AREA averages when shrinking; non-square images are stretched, as the model is square.
    return cv2.resize(grey, (resolution, resolution), interpolation=cv2.INTER_AREA)


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    import cv2

    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        raise RerenderError(f"OpenCV cannot write {ext} images")
    return buf.tobytes()


# --- calibration ------------------------------------------------------------------------------------
def load_calibration(npz_path: str | Path, groups: dict[str, slice]) -> Calibration:
    """Angle -> group code table per factor from an evaluation latents file.

    Returns ``{factor: (angles (n,) float64 ascending, codes (n, group_size) float64)}`` where
    ``codes[i]`` is the mean of ``mu[:, groups[factor]]`` over images whose factor equals
    ``angles[i]``. Factors whose group is empty (size 0) are left out.
    """
    path = Path(npz_path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("mu", *FACTORS) if k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise RerenderError(f"{path}: unreadable calibration file ({e})") from None
    missing = [k for k in ("mu", *FACTORS) if k not in arrays]
    if missing:
        raise RerenderError(f"{path}: not an evaluation latents file (missing {', '.join(missing)})")
    mu = np.asarray(arrays["mu"], dtype=np.float64)
    latent = max(sl.stop for sl in groups.values())
    if mu.ndim != 2 or mu.shape[1] != latent:
        raise RerenderError(
            f"{path}: calibration has codes of shape {mu.shape}, the model has {latent} latents "
            "(latents of a different model?)"
        )
    out: Calibration = {}
    for f in FACTORS:
        sl = groups[f]
        values = np.asarray(arrays[f], dtype=np.float64).ravel()
        if values.shape[0] != mu.shape[0]:
            raise RerenderError(f"{path}: {f} has {values.shape[0]} values for {mu.shape[0]} codes")
        if sl.stop <= sl.start:
            continue
        ok = np.isfinite(values) & np.isfinite(mu[:, sl]).all(axis=1)
        angles, inverse = np.unique(values[ok], return_inverse=True)
        if angles.size == 0:
            raise RerenderError(f"{path}: no finite {f} codes to calibrate from")
        sums = np.zeros((angles.size, sl.stop - sl.start))
        np.add.at(sums, inverse, mu[ok, sl])
        out[f] = (angles, sums / np.bincount(inverse)[:, None])
    return out


def code_for_angle(calibration: Calibration, factor: str, angle: float) -> np.ndarray:
    """The factor's group code at ``angle`` degrees (linear between calibrated grid angles)."""
    if factor not in calibration:
        known = ", ".join(calibration) or "none"
        raise RerenderError(f"{factor}: no calibration for this factor (calibrated: {known})")
    angles, codes = calibration[factor]
    lo, hi = float(angles[0]), float(angles[-1])
    if not (lo - RANGE_TOL <= angle <= hi + RANGE_TOL):
        raise RerenderError(f"{factor}={angle:g} is outside the calibrated (trained) range [{lo:g}, {hi:g}] degrees")
    return np.array([np.interp(angle, angles, codes[:, j]) for j in range(codes.shape[1])])


def rerender(model, image: np.ndarray, edits: dict[str, float], calibration: Calibration) -> np.ndarray:
    """Encode a uint8 grey (R, R) image, set each edited factor's group to its angle's code, decode.

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
        z[0, model.groups[factor]] = code_for_angle(calibration, factor, float(angle))
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
    """``eval/latents/<model dir name>.npz`` in the nearest ancestor of the checkpoint that has one.

    ``models/dcign`` -> ``eval/latents/dcign.npz``, as the DVC evaluate stage writes it.
    """
    ckpt = checkpoint.resolve()
    model_dir = ckpt if ckpt.is_dir() else ckpt.parent
    name = f"{model_dir.name}.npz"
    for root in model_dir.parents:
        candidate = root / "eval" / "latents" / name
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
    help="Latents .npz from dcign-evaluate. Default: eval/latents/<model dir name>.npz "
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
    type=click.IntRange(min=1),
    default=None,
    help="Upscale the output to SIZE x SIZE pixels for viewing (default: model resolution).",
)
def main(checkpoint, image_path, sets, calibration, out_path, size):
    """Re-render a face image with new azimuth / elevation / light angles."""
    edits = parse_edits(sets)
    # torch loads only once the arguments parse, so --help and --set errors are quick.
    from dcign.checkpoint import CheckpointError, load_model
    from render.shards import atomic_write_bytes

    try:
        model, cfg, info = load_model(checkpoint)
    except CheckpointError as e:
        raise click.ClickException(str(e)) from None
    if info.get("entangled") and edits:
        raise click.ClickException(f"{checkpoint}: the entangled baseline has no factor groups to edit")
    for f in edits:
        if model.groups[f].stop <= model.groups[f].start:
            raise click.ClickException(f"{checkpoint}: the model has no latents for {f} (z_{f} = 0)")
    try:
        image = read_image(image_path, cfg.resolution)
        table: Calibration = {}
        if edits:
            if calibration is None:
                calibration = default_calibration(checkpoint)
            if calibration is None:
                raise RerenderError(
                    f"no eval/latents/{_model_name(checkpoint)}.npz found above {checkpoint}; "
                    "pass --calibration (a latents file written by dcign-evaluate)"
                )
            table = load_calibration(calibration, model.groups)
        out = rerender(model, image, edits, table)
        if size is not None and size != out.shape[0]:
            import cv2

            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_CUBIC)
        data = encode_image(out, out_path.suffix.lower() or ".png")
        atomic_write_bytes(out_path, data)
    except RerenderError as e:
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
