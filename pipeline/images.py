"""Face images in and out: any image file -> uint8 grey at its own size or the model's, grey -> PNG bytes.

Colour is turned grey with the renders' weights (0.21 R + 0.72 G + 0.07 B, ``GREY_WEIGHTS``);
OpenCV decodes colour as BGR (:func:`bgr_to_grey`), the renderer's own pixels are RGB
(:func:`render.renderer.rgb_to_grey`). A file that is no image, or declares more pixels than any
photo, is an :class:`ImageError` naming it, raised before OpenCV allocates anything.
``dcign-rerender``, ``dcign-fit`` (and its stage) and the explorer read and write images here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.vocabulary import GREY_WEIGHTS

MAX_IMAGE_PIXELS = 1 << 26  # 64 megapixels: larger than any camera's photo


class ImageError(ValueError):
    """A file that is no usable image (the message names it)."""


def bgr_to_grey(image: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded image (grey, BGR, BGRA; 8 or 16 bit) -> uint8 grey (H, W)."""
    img = image.astype(np.float32)
    if image.dtype == np.uint16:
        img /= 257.0
    elif image.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {image.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:  # transparent areas become black, like the renders' dark background
        img = img[..., :3] * (img[..., 3:] / 255.0)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1] @ GREY_WEIGHTS  # OpenCV decodes BGR
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim != 2:
        raise ImageError(f"unsupported image shape {image.shape}")
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
    """Read an image file -> uint8 grey (H, W) at its own size; ImageError naming the file if it is none."""
    import cv2

    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a named pipe that would block the read
        raise ImageError(f"{path}: not a regular file")
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e.strerror or e})") from None
    size = declared_size(data.tobytes())
    if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
        declared = "an image" if size is None else f"a {size[0]}x{size[1]} image"
        raise ImageError(f"{path}: {declared} larger than {MAX_IMAGE_PIXELS} pixels (no photo of a face is)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # OpenCV's own limits (2^30 pixels) and corrupt streams
        first = (str(e).strip().splitlines() or ["cv2.error"])[-1].strip()
        raise ImageError(f"{path}: not an image OpenCV can decode ({first[:120]})") from None
    if image is None:
        raise ImageError(f"{path}: not an image OpenCV can decode")
    try:
        grey = bgr_to_grey(image)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None
    return grey


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    """A uint8 image -> the bytes of an image file of type ``ext`` (PNG by default)."""
    import cv2

    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        raise ImageError(f"OpenCV cannot write {ext} images")
    return buf.tobytes()
