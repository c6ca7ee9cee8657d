"""Evaluation pictures (matplotlib, headless): latent-vs-truth scatter, traversals, re-render grids."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def scatter_png(path: Path, scatter: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """One panel per factor: true angle (x) against the factor's latent (y), as in the paper's Figure 6."""
    fig, axes = plt.subplots(1, max(1, len(scatter)), figsize=(4 * max(1, len(scatter)), 3.6), squeeze=False)
    for ax, (f, (truth, latent)) in zip(axes[0], scatter.items(), strict=False):
        ax.scatter(truth, latent, s=4, alpha=0.5)
        r = np.corrcoef(truth, latent)[0, 1] if np.std(latent) > 0 else float("nan")
        ax.set(xlabel=f"true {f} (deg)", ylabel="latent", title=f"{title}: {f} (r = {r:.2f})")
    _save(fig, path)


def _grid(ax, images: np.ndarray, title: str, row_labels=None, col_labels=None) -> None:
    rows, cols, r, _ = images.shape
    canvas = np.ones((rows * (r + 1), cols * (r + 1)), np.float32)
    for i in range(rows):
        for j in range(cols):
            canvas[i * (r + 1) : i * (r + 1) + r, j * (r + 1) : j * (r + 1) + r] = images[i, j]
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([(j + 0.5) * (r + 1) for j in range(cols)] if col_labels else [])
    ax.set_xticklabels(col_labels or [], fontsize=8)
    ax.set_yticks([(i + 0.5) * (r + 1) for i in range(rows)] if row_labels else [])
    ax.set_yticklabels(row_labels or [], fontsize=8)


def traversal_png(path: Path, traversals: list[np.ndarray], factors) -> None:
    """Per face: one row per factor, its latent swept from low to high."""
    n = len(traversals)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 2.2), squeeze=False)
    for ax, t in zip(axes[0], traversals, strict=True):
        _grid(ax, t, "latent traversal", row_labels=list(factors))
    _save(fig, path)


RERENDER_COLUMNS = ["input", "edited", "truth", "dec(truth)", "mean img"]


def rerender_png(path: Path, examples: dict[str, np.ndarray]) -> None:
    """Per factor: rows of (input | edited | ground truth | decode(mu_truth) | mean training image at the target)."""
    fig, axes = plt.subplots(1, len(examples), figsize=(3.6 * len(examples), 3.4), squeeze=False)
    for ax, (f, ex) in zip(axes[0], examples.items(), strict=True):
        _grid(ax, ex, f"re-render: {f}", col_labels=RERENDER_COLUMNS[: ex.shape[1]])
    _save(fig, path)
