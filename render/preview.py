"""Contact sheets: rows of images (one row per batch) with a label, written as PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from render.atomic import atomic_write_bytes

LABEL_WIDTH = 150
PAD = 2


def _to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def contact_sheet(rows: list[np.ndarray], labels: list[str] | None = None, scale: int = 0) -> np.ndarray:
    """Stack rows of (n, R, R[, 3]) uint8 images into one RGB sheet, a label left of each row."""
    if not rows:
        raise ValueError("contact sheet needs at least one row")
    res = rows[0].shape[1]
    scale = scale or max(1, 96 // res)  # small renders are upscaled so a person can see them
    cell = res * scale + PAD
    cols = max(len(r) for r in rows)
    label_w = LABEL_WIDTH if labels else 0
    sheet = np.full((len(rows) * cell + PAD, label_w + cols * cell + PAD, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        y = PAD + i * cell
        for j, img in enumerate(row):
            x = label_w + PAD + j * cell
            big = cv2.resize(_to_rgb(img), (res * scale, res * scale), interpolation=cv2.INTER_NEAREST)
            sheet[y : y + res * scale, x : x + res * scale] = big
        if labels:
            cv2.putText(
                sheet, labels[i], (4, y + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
    return sheet


def write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), buf.tobytes())
