"""Face identification accuracy from latent codes (closed-set, rank-1).

Protocol (the DC-IGN analysis of identity information in the intrinsic latents, Kulkarni et al.
2015): every probe code is matched to the most similar gallery code and counts as correct when
that gallery code has the probe's identity. Features are first standardised with the gallery's
per-latent mean and standard deviation (latents with zero gallery std are only centred).
Similarity is the cosine similarity (``metric="cosine"``), the Pearson correlation between the
two feature vectors (``metric="correlation"``: each vector centred by its own mean, then cosine),
or the negative Euclidean distance (``metric="euclidean"``). Ties go to the first gallery entry.
"""

from __future__ import annotations

import numpy as np

from .utils import as_2d

__all__ = ["identification_accuracy"]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def identification_accuracy(
    gallery_codes: np.ndarray,
    gallery_ids: np.ndarray,
    probe_codes: np.ndarray,
    probe_ids: np.ndarray,
    metric: str = "cosine",
) -> dict:
    """Rank-1 nearest-neighbour identification accuracy.

    Args:
      gallery_codes: ``(G, D)`` codes of the enrolled images.
      gallery_ids: ``(G,)`` identity labels of the gallery.
      probe_codes: ``(P, D)`` codes to identify.
      probe_ids: ``(P,)`` true identity labels of the probes.
      metric: ``"cosine"``, ``"correlation"`` or ``"euclidean"``.

    Returns:
      ``{"top1": float}``.
    """
    g = as_2d(gallery_codes, "gallery_codes")
    p = as_2d(probe_codes, "probe_codes")
    gid = np.asarray(gallery_ids).ravel()
    pid = np.asarray(probe_ids).ravel()
    if g.shape[0] != gid.size or p.shape[0] != pid.size:
        raise ValueError("codes and ids must have matching lengths")
    if g.shape[1] != p.shape[1]:
        raise ValueError("gallery and probe codes must have the same dimension")
    if g.shape[0] == 0:
        raise ValueError("empty gallery")
    mean = g.mean(axis=0)
    std = g.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    gs, ps = (g - mean) / std, (p - mean) / std
    if metric == "cosine":
        sim = _unit_rows(ps) @ _unit_rows(gs).T
    elif metric == "correlation":
        sim = _unit_rows(ps - ps.mean(axis=1, keepdims=True)) @ _unit_rows(gs - gs.mean(axis=1, keepdims=True)).T
    elif metric == "euclidean":
        sim = -(np.sum(ps**2, axis=1)[:, None] - 2 * ps @ gs.T + np.sum(gs**2, axis=1)[None, :])
    else:
        raise ValueError(f"unknown metric {metric!r}")
    nearest = np.argmax(sim, axis=1)
    top1 = float(np.mean(gid[nearest] == pid)) if pid.size else float("nan")
    return {"top1": top1}
