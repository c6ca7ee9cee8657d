"""Face recognition from latent codes: closed-set identification and pair verification.

Both protocols ask whether the identity (intrinsic) latents of DC-IGN (Kulkarni, Whitney, Kohli &
Tenenbaum 2015, "Deep Convolutional Inverse Graphics Network", NeurIPS) stay the same for one face
across poses while differing between faces.

Features: every latent is standardised, ``(z - mean) / std``, with statistics from a split separate
from the images being compared (:func:`standardisation`). Standardising by a small gallery's own
statistics (e.g. 12 frontal images) made latents that are nearly constant over those images, but
not over the probes, blow up into noise that dominated the similarity.

Similarity of two standardised vectors (``metric``):

* ``"correlation"`` (default): their Pearson correlation (each vector centred by its own mean over
  latents, then cosine), as the DC-IGN analysis scripts scored pairs by the correlation of
  standardised intrinsic latents;
* ``"cosine"``: cosine similarity;
* ``"euclidean"``: negative Euclidean distance.

A vector that is zero after the transform (e.g. one latent under ``"correlation"``) has similarity 0
with everything.

Identification (rank-1, closed set): each probe is assigned the identity of its most similar
gallery entry (ties to the first entry) and is correct when that is its own identity; ``top1`` is
the fraction correct (chance ``1 / #identities`` with one gallery image per identity).

Verification: balanced same / different-identity pairs of images at different azimuths
(:func:`verification_pairs`, balanced as face-verification benchmarks such as LFW are), scored by
similarity (:func:`pair_scores`); the threshold-free summary is the ROC AUC (:func:`roc_auc`, the
Mann-Whitney probability that a same pair outscores a different pair, ties counted 1/2), and the
accuracy uses a threshold chosen on a development split (:func:`best_threshold`,
:func:`accuracy_at`; chance 0.5).

Unlike the other metric modules, :func:`identification`, :func:`verification_pairs` and
:func:`pair_scores` return per-item numpy arrays, which the caller needs for cluster-bootstrap
intervals (:mod:`pipeline.metrics.bootstrap`).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from .utils import as_2d, encode_labels

__all__ = [
    "accuracy_at",
    "best_threshold",
    "identification",
    "pair_scores",
    "roc_auc",
    "similarity",
    "standardisation",
    "verification_pairs",
]

METRICS = ("correlation", "cosine", "euclidean")


def standardisation(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-latent mean and standard deviation ``(D,)``, ``(D,)`` of a separate split of codes ``(N, D)``.

    Latents with std < 1e-8 get std 1 (they are only centred). See the module docstring for why the
    statistics must not come from the compared images themselves.
    """
    x = as_2d(codes, "codes")
    if x.shape[0] == 0:
        raise ValueError("empty codes")
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std < 1e-8, 1.0, std)


def _features(x: np.ndarray, mean: np.ndarray, std: np.ndarray, metric: str) -> np.ndarray:
    """Standardised codes, centred per row and / or scaled to unit norm as ``metric`` needs."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    mean, std = np.asarray(mean, dtype=float).ravel(), np.asarray(std, dtype=float).ravel()
    if mean.size != x.shape[1] or std.size != x.shape[1]:
        raise ValueError(f"mean and std must have {x.shape[1]} entries")
    z = (x - mean) / std
    if metric == "euclidean":
        return z
    if metric == "correlation":
        z = z - z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def _similarity_features(fa: np.ndarray, fb: np.ndarray, metric: str) -> np.ndarray:
    return -cdist(fa, fb) if metric == "euclidean" else fa @ fb.T


def similarity(
    a: np.ndarray, b: np.ndarray, mean: np.ndarray, std: np.ndarray, metric: str = "correlation"
) -> np.ndarray:
    """``(Na, Nb)`` similarity between the rows of ``a`` ``(Na, D)`` and ``b`` ``(Nb, D)`` after standardisation."""
    a, b = as_2d(a, "a"), as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError("a and b must have the same number of latents")
    return _similarity_features(_features(a, mean, std, metric), _features(b, mean, std, metric), metric)


def identification(
    gallery_codes: np.ndarray,
    gallery_ids: np.ndarray,
    probe_codes: np.ndarray,
    probe_ids: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    metric: str = "correlation",
    chunk: int = 4096,
) -> dict:
    """Rank-1 closed-set identification (see the module docstring).

    Args:
      gallery_codes: ``(G, D)`` codes of the enrolled images.
      gallery_ids: ``(G,)`` identity labels of the gallery.
      probe_codes: ``(P, D)`` codes to identify.
      probe_ids: ``(P,)`` true identity labels of the probes.
      mean, std: ``(D,)`` standardisation from a separate split (:func:`standardisation`).
      metric: ``"correlation"``, ``"cosine"`` or ``"euclidean"``.
      chunk: probes scored at once (memory bound).

    Returns:
      ``{"top1": float (nan without probes), "correct": np.ndarray bool (P,)}``.
    """
    g, p = as_2d(gallery_codes, "gallery_codes"), as_2d(probe_codes, "probe_codes")
    gid, pid = np.asarray(gallery_ids).ravel(), np.asarray(probe_ids).ravel()
    if g.shape[0] != gid.size or p.shape[0] != pid.size:
        raise ValueError("codes and ids must have matching lengths")
    if g.shape[1] != p.shape[1]:
        raise ValueError("gallery and probe codes must have the same number of latents")
    if g.shape[0] == 0:
        raise ValueError("empty gallery")
    fg = _features(g, mean, std, metric)
    fp = _features(p, mean, std, metric)
    nearest = np.empty(p.shape[0], dtype=np.int64)
    for s in range(0, p.shape[0], chunk):
        nearest[s : s + chunk] = np.argmax(_similarity_features(fp[s : s + chunk], fg, metric), axis=1)  # first on ties
    correct = gid[nearest] == pid
    return {"top1": float(np.mean(correct)) if correct.size else float("nan"), "correct": correct}


def _sample_negative_pairs(
    id_code: np.ndarray, az_code: np.ndarray, n_wanted: int, rng: np.random.Generator, enumerate_limit: int = 1 << 22
) -> tuple[np.ndarray, np.ndarray]:
    """``n_wanted`` distinct pairs ``i < j`` of different identity and azimuth, uniformly without replacement."""
    n = id_code.size
    if n_wanted == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n * (n - 1) // 2 <= enumerate_limit:
        i, j = np.triu_indices(n, k=1)
        ok = (id_code[i] != id_code[j]) & (az_code[i] != az_code[j])
        i, j = i[ok], j[ok]
        pick = np.sort(rng.choice(i.size, size=n_wanted, replace=False))
        return i[pick].astype(np.int64), j[pick].astype(np.int64)
    # Too many pairs to list: draw uniformly random unordered pairs, keep valid ones, first occurrence wins.
    keys = np.zeros(0, dtype=np.int64)
    while keys.size < n_wanted:
        m = max(2 * (n_wanted - keys.size), 1024)
        a, b = rng.integers(n, size=(2, m))
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        ok = (lo != hi) & (id_code[lo] != id_code[hi]) & (az_code[lo] != az_code[hi])
        keys = np.concatenate([keys, lo[ok] * n + hi[ok]])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
    keys = np.sort(keys[:n_wanted])
    return keys // n, keys % n


def verification_pairs(
    ids: np.ndarray, azimuth: np.ndarray, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced verification pairs of images at different azimuths.

    Positives are all same-identity pairs ``i < j`` whose azimuths differ; negatives are as many
    different-identity pairs (also at different azimuths), drawn uniformly without duplicates.

    Args:
      ids: ``(N,)`` identity label of every image.
      azimuth: ``(N,)`` azimuth (value or grid index) of every image.
      seed: integer seed or ``np.random.Generator`` (negative sampling).

    Returns:
      ``(i, j, same)``: ``(2P,)`` int64 row numbers with ``i < j`` (positives first, each half sorted)
      and ``(2P,)`` bool, True for same-identity pairs.
    """
    id_code, az_code = encode_labels(ids), encode_labels(azimuth)
    if id_code.size != az_code.size:
        raise ValueError("ids and azimuth must have the same length")
    n = id_code.size
    pos_i, pos_j = [], []
    for g in range(int(id_code.max(initial=-1)) + 1):
        rows = np.flatnonzero(id_code == g)
        a, b = np.triu_indices(rows.size, k=1)
        keep = az_code[rows[a]] != az_code[rows[b]]
        pos_i.append(rows[a][keep])
        pos_j.append(rows[b][keep])
    pi = np.concatenate(pos_i).astype(np.int64) if pos_i else np.zeros(0, dtype=np.int64)
    pj = np.concatenate(pos_j).astype(np.int64) if pos_j else np.zeros(0, dtype=np.int64)
    order = np.lexsort((pj, pi))
    pi, pj = pi[order], pj[order]
    per_azimuth = np.bincount(az_code)
    n_negative = n * (n - 1) // 2 - int(np.sum(per_azimuth * (per_azimuth - 1) // 2)) - pi.size
    if n_negative < pi.size:
        raise ValueError(f"only {n_negative} different-identity pairs for {pi.size} same-identity pairs")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ni, nj = _sample_negative_pairs(id_code, az_code, pi.size, rng)
    same = np.concatenate([np.ones(pi.size, dtype=bool), np.zeros(ni.size, dtype=bool)])
    return np.concatenate([pi, ni]), np.concatenate([pj, nj]), same


def pair_scores(
    codes: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    metric: str = "correlation",
    chunk: int = 65536,
) -> np.ndarray:
    """``(P,)`` similarity of the pairs ``(codes[i], codes[j])``, row by row (no ``N x N`` matrix).

    Args:
      codes: ``(N, D)`` codes.
      i, j: ``(P,)`` row numbers of the pairs.
      mean, std: ``(D,)`` standardisation from a separate split.
      metric: ``"correlation"``, ``"cosine"`` or ``"euclidean"``.
      chunk: pairs scored at once (memory bound).
    """
    f = _features(as_2d(codes, "codes"), mean, std, metric)
    i, j = np.asarray(i, dtype=np.int64).ravel(), np.asarray(j, dtype=np.int64).ravel()
    if i.size != j.size:
        raise ValueError("i and j must have the same length")
    out = np.empty(i.size)
    for s in range(0, i.size, chunk):
        a, b = f[i[s : s + chunk]], f[j[s : s + chunk]]
        out[s : s + chunk] = -np.linalg.norm(a - b, axis=1) if metric == "euclidean" else np.sum(a * b, axis=1)
    return out


def _scores_labels(scores, labels, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    raw = np.asarray(labels).ravel()
    if raw.size != s.size:
        raise ValueError("scores and labels must have the same length")
    if not np.all((raw == 0) | (raw == 1)):
        raise ValueError("labels must be boolean or 0/1")
    if np.any(np.isnan(s)):
        raise ValueError("scores contain nan")
    w = np.ones(s.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.size != s.size or np.any(w < 0):
        raise ValueError("weights must be non-negative, one per score")
    return s, raw.astype(bool), w


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve: ``P(score_same > score_diff) + P(tie) / 2`` over (weighted) pairs.

    Args:
      scores: ``(P,)`` similarity scores (higher = more likely the same identity). The AUC depends on their
        order alone: for repeated calls (bootstrap) pass the dense ranks
        ``np.unique(scores, return_inverse=True)[1]`` once computed, which skips the sort (integer scores in
        ``[0, 4P]`` are used as ranks directly).
      labels: ``(P,)`` bool, True for same-identity pairs.
      weights: optional ``(P,)`` non-negative weights (a same/different pair of items counts with the
        product of their weights, e.g. bootstrap counts); equals scikit-learn's ``roc_auc_score``
        with ``sample_weight``.

    Returns:
      The AUC, or nan when either class has zero total weight.
    """
    s, y, w = _scores_labels(scores, labels, weights)
    raw = np.asarray(scores).ravel()
    if np.issubdtype(raw.dtype, np.integer) and raw.size and raw.min() >= 0 and raw.max() <= 4 * raw.size:
        inv, n_bins = raw, int(raw.max()) + 1  # ranks given: empty bins are harmless below
    else:
        uniq, inv = np.unique(s, return_inverse=True)
        n_bins = uniq.size
    wp = np.bincount(inv, weights=w * y, minlength=n_bins)
    wn = np.bincount(inv, weights=w * ~y, minlength=n_bins)
    total_p, total_n = wp.sum(), wn.sum()
    if total_p <= 0 or total_n <= 0:
        return float("nan")
    below = np.cumsum(wn) - wn  # weight of negatives scoring strictly lower
    return float(np.sum(wp * (below + 0.5 * wn)) / (total_p * total_n))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising the accuracy of ``same = score >= threshold`` on (development) pairs.

    Candidates are midpoints between consecutive distinct scores, the lowest score (all same) and
    the next float above the highest (all different); among equally accurate ones the lowest wins.
    """
    s, y, _ = _scores_labels(scores, labels)
    if s.size == 0:
        raise ValueError("no scores")
    uniq, inv = np.unique(s, return_inverse=True)
    n_pos = np.bincount(inv, weights=y.astype(float), minlength=uniq.size)
    n_neg = np.bincount(inv, weights=(~y).astype(float), minlength=uniq.size)
    # Cut k (0..U): scores >= uniq[k] are called same (k = U: none).
    pos_above = n_pos.sum() - np.concatenate([[0.0], np.cumsum(n_pos)])
    neg_below = np.concatenate([[0.0], np.cumsum(n_neg)])
    k = int(np.argmax(pos_above + neg_below))
    if k == 0:
        return float(uniq[0])
    if k == uniq.size:
        return float(np.nextafter(uniq[-1], np.inf))
    mid = uniq[k - 1] + (uniq[k] - uniq[k - 1]) / 2
    return float(mid if mid > uniq[k - 1] else uniq[k])


def class_balanced(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pair weights rescaled so that each class keeps its share of the pairs: ``w * n_c / sum_c(w)``.

    In a cluster bootstrap over identities a pair of items weighs the product of their identities'
    draw counts, ``w_i * w_j``. For a same-identity pair that is ``w_i**2``, whose expectation under
    multinomial resampling is about 2, against 1 for a pair of two identities: unrescaled, replicates
    count positives twice and an accuracy's percentile interval moves off its own estimate. A class
    whose weights sum to 0 keeps weight 0 (nan statistics are then left out by the bootstrap).

    Args:
      weights: ``(P,)`` non-negative pair weights.
      labels: ``(P,)`` bool or 0/1, the pair's class.

    Returns:
      ``(P,)`` float weights with the same total per class as unit weights.
    """
    w = np.asarray(weights, dtype=float).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    out = np.zeros_like(w)
    for cls in (False, True):
        sel = y == cls
        total = w[sel].sum()
        if total > 0:
            out[sel] = w[sel] * (sel.sum() / total)
    return out


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> float:
    """(Weighted) accuracy of ``same = score >= threshold``; nan when the weights sum to 0."""
    s, y, w = _scores_labels(scores, labels, weights)
    total = w.sum()
    return float(np.sum(w * ((s >= threshold) == y)) / total) if total > 0 else float("nan")
