"""Cluster-bootstrap percentile intervals.

Method (the cluster or block bootstrap, Davison & Hinkley 1997, "Bootstrap Methods and their
Application", Sec. 3.8; Field & Welsh 2007, "Bootstrapping clustered data", JRSS B): the unique
cluster labels (e.g. face identities) are resampled with replacement, ``C`` draws from ``C``
clusters, and every item inherits its cluster's draw count as a weight; the statistic is
recomputed on the weighted items and the interval is the ``(1 - level) / 2`` and
``(1 + level) / 2`` percentiles of the ``n_boot`` replicates (numpy's linear interpolation).
Clusters, not items, are resampled because the images of one face are not independent: resampling
items would treat 50 renders of a face as 50 faces and give intervals that are too narrow.

Replicates whose statistic is nan (e.g. a resample without any positive pair for an AUC) are left
out; ``n_boot`` in the result counts the replicates used. Deterministic given ``seed``;
:func:`bootstrap_mean` draws the same resamples as :func:`cluster_bootstrap` for the same
``clusters`` and ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .utils import encode_labels

__all__ = ["bootstrap_mean", "cluster_bootstrap", "half_sample_interval"]


def _count_blocks(
    n_clusters: int, n_boot: int, seed: int | np.random.Generator, max_elements: int = 1 << 22
) -> Iterator[np.ndarray]:
    """Yield ``(b, C)`` blocks of bootstrap draw counts per cluster, ``n_boot`` rows in all."""
    if n_clusters < 1:
        raise ValueError("no clusters")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    block = max(1, max_elements // n_clusters)  # fixed by the sizes alone, so both functions share the stream
    for b0 in range(0, n_boot, block):
        b = min(block, n_boot - b0)
        draws = rng.integers(n_clusters, size=(b, n_clusters))
        flat = draws + n_clusters * np.arange(b)[:, None]
        yield np.bincount(flat.ravel(), minlength=b * n_clusters).reshape(b, n_clusters)


def _interval(replicates: np.ndarray, level: float) -> dict:
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    ok = replicates[~np.isnan(replicates)]
    if ok.size == 0:
        return {"lo": float("nan"), "hi": float("nan"), "n_boot": 0}
    lo, hi = np.percentile(ok, [50 * (1 - level), 50 * (1 + level)])
    return {"lo": float(lo), "hi": float(hi), "n_boot": int(ok.size)}


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], float],
    clusters: np.ndarray,
    n_boot: int = 1000,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
) -> dict:
    """Percentile interval of ``statistic`` under resampling of the clusters.

    Args:
      statistic: called as ``statistic(weights)`` with ``weights`` ``(N,)`` float, the draw count of each
        item's cluster (0 for clusters not drawn); returns a float (nan replicates are left out).
      clusters: ``(N,)`` cluster label of every item (any hashable values numpy can sort).
      n_boot: number of bootstrap replicates.
      seed: integer seed or ``np.random.Generator``.
      level: coverage of the interval.

    Returns:
      ``{"lo": float, "hi": float, "n_boot": int (replicates used)}``.
    """
    inverse = encode_labels(clusters)
    n_clusters = int(inverse.max(initial=-1)) + 1
    reps = []
    for counts in _count_blocks(n_clusters, n_boot, seed):
        reps.extend(float(statistic(c[inverse].astype(float))) for c in counts)
    return _interval(np.asarray(reps), level)


def bootstrap_mean(
    values: np.ndarray,
    clusters: np.ndarray,
    n_boot: int = 1000,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
) -> dict:
    """Mean of per-item values with a cluster-bootstrap interval (vectorised :func:`cluster_bootstrap`).

    Each replicate is the weighted mean ``sum_i w_i v_i / sum_i w_i`` with ``w_i`` the draw count of
    item ``i``'s cluster, so larger clusters weigh more, as in the plain mean over items.

    Args:
      values: ``(N,)`` per-item values (e.g. per-probe correctness as 0/1, per-image PSNR).
      clusters: ``(N,)`` cluster label of every item.
      n_boot, seed, level: as :func:`cluster_bootstrap`.

    Returns:
      ``{"mean": float (over all items), "lo": float, "hi": float}``.
    """
    v = np.asarray(values, dtype=float).ravel()
    inverse = encode_labels(clusters)
    if inverse.size != v.size:
        raise ValueError("values and clusters must have the same length")
    n_clusters = int(inverse.max(initial=-1)) + 1
    sums = np.bincount(inverse, weights=v, minlength=n_clusters)  # (C,)
    sizes = np.bincount(inverse, minlength=n_clusters).astype(float)  # (C,)
    reps = []
    for counts in _count_blocks(n_clusters, n_boot, seed):
        reps.append((counts @ sums) / (counts @ sizes))
    out = _interval(np.concatenate(reps), level)
    return {"mean": float(v.mean()), "lo": out["lo"], "hi": out["hi"]}


def half_sample_interval(
    statistic: Callable[[np.ndarray], float],
    clusters: np.ndarray,
    n_splits: int = 50,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
) -> dict:
    """Normal interval from the delete-half jackknife over clusters, for statistics that resampling biases.

    Method (delete-d jackknife with d = half the clusters, Shao & Wu 1989, "A general theory for
    jackknife variance estimation", Ann. Stat.): ``n_splits`` random halves of the clusters are drawn
    without replacement; ``statistic(mask)`` receives the boolean item mask of a half. With half
    the clusters deleted, the jackknife variance of the full-sample statistic is the variance of
    the half-sample values, so the interval is ``theta +- z * sd(theta_half)`` around the
    full-sample value ``theta = statistic(all items)``. For estimators of mutual information such as
    the continuous MIG, resampling clusters *with* replacement duplicates faces, which biases the
    estimate upward and leaves the percentile interval away from the estimate; halves have no
    duplicates, and only their spread is used.

    Returns ``{"value", "lo", "hi", "n_splits"}``.
    """
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    labels = encode_labels(np.asarray(clusters).ravel())
    n_clusters = int(labels.max(initial=-1)) + 1
    if n_clusters < 2 or n_splits < 2:
        raise ValueError("need at least 2 clusters and 2 splits")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    value = float(statistic(np.ones(labels.size, dtype=bool)))
    halves = []
    for _ in range(n_splits):
        keep = rng.permutation(n_clusters)[: n_clusters // 2]
        halves.append(float(statistic(np.isin(labels, keep))))
    ok = np.asarray(halves)[~np.isnan(halves)]
    if ok.size < 2:
        return {"value": value, "lo": float("nan"), "hi": float("nan"), "n_splits": int(ok.size)}
    half = float(norm.ppf(0.5 + level / 2)) * float(ok.std(ddof=1))
    return {"value": value, "lo": value - half, "hi": value + half, "n_splits": int(ok.size)}
