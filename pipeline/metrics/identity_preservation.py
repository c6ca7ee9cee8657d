"""Identity preservation of re-rendered faces, by pixel-correlation matching among candidate identities.

Protocol (ours, after the DC-IGN re-rendering experiments of Kulkarni, Whitney, Kohli & Tenenbaum
2015, "Deep Convolutional Inverse Graphics Network", NeurIPS): an image of a face is encoded, its
pose / light latents are set to target values and it is decoded. The true renders of ``C``
identities at those same target factors are the candidates, one of them the source identity. The
re-rendered image is matched to the candidate with the highest Pearson correlation of pixels
(each image centred by its own mean pixel value and scaled to unit norm; ties go to the
lowest candidate index, and a constant image, correlation 0 with everything, thus picks candidate
0); it is correct when that is the source identity. ``top1`` is the fraction correct.

Unlike PSNR / SSIM against the source identity's render, this asks whether the decoder kept *who*
the face is rather than producing a plausible average: a blurry generic head correlates about
equally with every candidate and scores at chance, ``1 / C``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["identity_preservation"]


def _unit_centred(x: np.ndarray) -> np.ndarray:
    """Rows of ``(..., P)`` centred by their own mean and scaled to unit norm (zero rows stay zero)."""
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def identity_preservation(images: np.ndarray, candidates: np.ndarray, true_index: np.ndarray, chunk: int = 256) -> dict:
    """Fraction of re-rendered images whose best-correlated candidate is the source identity.

    Args:
      images: ``(N, R, R)`` re-rendered images (any trailing pixel shape, e.g. ``(N, R, R, 3)``).
      candidates: ``(N, C, R, R)`` true renders of ``C`` identities at each image's target factors.
      true_index: ``(N,)`` position of the source identity among the candidates.
      chunk: images processed at once (memory bound).

    Returns:
      ``{"top1": float (nan without images), "correct": np.ndarray bool (N,)}``; chance is ``1 / C``.
    """
    images = np.asarray(images)
    candidates = np.asarray(candidates)
    true_index = np.asarray(true_index, dtype=np.int64).ravel()
    n = images.shape[0]
    if candidates.ndim != images.ndim + 1 or candidates.shape[0] != n or candidates.shape[2:] != images.shape[1:]:
        raise ValueError(f"candidates must be (N, C, *pixels) for images {images.shape}, got {candidates.shape}")
    n_cand = candidates.shape[1]
    if true_index.size != n or np.any(true_index < 0) or np.any(true_index >= n_cand):
        raise ValueError("true_index must hold one candidate position in [0, C) per image")
    best = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        a = _unit_centred(images[s : s + chunk].reshape(min(chunk, n - s), -1).astype(np.float64))  # (b, P)
        c = _unit_centred(candidates[s : s + chunk].reshape(a.shape[0], n_cand, -1).astype(np.float64))  # (b, C, P)
        best[s : s + chunk] = np.argmax(np.einsum("bp,bcp->bc", a, c), axis=1)  # first candidate on ties
    correct = best == true_index
    return {"top1": float(np.mean(correct)) if n else float("nan"), "correct": correct}
