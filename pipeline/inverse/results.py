"""What a fit leaves behind, for ``dcign-fit`` and the fit stage alike: one JSON file per image, a picture.

Each image's result (``results/<image>.json``) is written when the image is done, with the key of
the settings it was fitted with; a rerun reuses it only under the same key (:func:`load_result`),
so a folder's fit resumes after a kill. Each image's search draws from its own seed
(:func:`item_seed`), so results do not depend on the order of the images.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from render.atomic import atomic_write_bytes


def strip(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Images side by side, white gaps between them."""
    r = images[0].shape[0]
    out = np.full((r, len(images) * (r + gap) - gap), 255, np.uint8)
    for i, im in enumerate(images):
        out[:, i * (r + gap) : i * (r + gap) + r] = im
    return out


def finite(obj):
    """JSON has no inf/nan: write them as null."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def item_seed(seed: int, name: str) -> int:
    """Each image's search seed: from the run's seed and the image's name, so it does not depend on the order."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def write_result(path: Path, result: dict) -> dict:
    """Write an image's result (atomically, keys in the order they were made) and return it as a rerun
    reads it back (non-finite numbers as null): a fresh result and a reused one then make the same
    tables, column order included."""
    text = json.dumps(finite(result), indent=2) + "\n"
    atomic_write_bytes(path, text.encode())
    return json.loads(text)


def load_result(path: Path, key: dict) -> dict | None:
    """A finished image's result, if it was fitted with the same settings (else it is fitted again)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("key") == key else None
