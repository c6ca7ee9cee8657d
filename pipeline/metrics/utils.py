"""Shared helpers for the disentanglement metrics (numpy only).

Conventions used throughout :mod:`pipeline.metrics`:

* ``codes`` is an ``(N, D)`` float array of latent means (one row per image).
* ``factors`` is an ``(N, K)`` array of ground-truth factor values, continuous or discrete.
* ``factor_indices`` is an ``(N, K)`` integer array of positions on a factor grid, with
  ``0 <= factor_indices[:, k] < factor_sizes[k]``.

Entropies and mutual informations are in nats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_2d",
    "check_grid",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "discretize_factors",
    "encode_labels",
    "group_by_value",
    "mutual_info_matrix",
    "sample_same_value",
]


def as_2d(x: np.ndarray, name: str = "array", dtype=float) -> np.ndarray:
    """Return ``x`` as a 2-D array (a 1-D input becomes a single column)."""
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    return arr


def discretize(x: np.ndarray, bins: int = 20) -> np.ndarray:
    """Equal-width histogram discretisation of each column, as in disentanglement_lib.

    Mirrors ``disentanglement_lib.evaluation.metrics.utils._histogram_discretize``: for each
    column the range ``[min, max]`` is split into ``bins`` equal-width bins and every value is
    replaced by its bin index. Output values are integers in ``[0, bins - 1]``; a constant
    column maps to a single bin.

    Args:
      x: ``(N,)`` or ``(N, D)`` array.
      bins: number of equal-width bins per column.

    Returns:
      Integer array with the shape of ``x``.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    arr = np.asarray(x, dtype=float)
    squeeze = arr.ndim == 1
    arr = as_2d(arr, "x")
    out = np.zeros(arr.shape, dtype=np.int64)
    for j in range(arr.shape[1]):
        col = arr[:, j]
        edges = np.histogram_bin_edges(col, bins=bins)
        # np.digitize against the left edges gives 1..bins (max value falls in the last bin).
        out[:, j] = np.digitize(col, edges[:-1]) - 1
    return out[:, 0] if squeeze else out


def encode_labels(x: np.ndarray) -> np.ndarray:
    """Map arbitrary discrete values of a 1-D array to consecutive integers ``0..n_values-1``."""
    return np.unique(np.asarray(x).ravel(), return_inverse=True)[1].astype(np.int64)


def discretize_factors(factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """Discretise ground-truth factors column by column.

    A column is treated as already discrete, and only relabelled to ``0..n-1``, when it has an
    integer or boolean dtype (e.g. grid indices or identity labels, however many values) or has at
    most ``bins`` distinct values; discrete factors are thus used exactly, as in disentanglement_lib
    where factors are grid indices. Any other (float) column is treated as continuous and
    discretised with :func:`discretize` into ``bins`` equal-width bins.
    """
    arr = np.asarray(factors)
    arr = arr[:, None] if arr.ndim == 1 else arr
    integral = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
    out = np.empty(arr.shape, dtype=np.int64)
    for k in range(arr.shape[1]):
        col = arr[:, k]
        if integral or np.unique(col).size <= bins:
            out[:, k] = encode_labels(col)
        else:
            out[:, k] = discretize(col.astype(float), bins)
    return out


def _contingency(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xi = encode_labels(x)
    yi = encode_labels(y)
    if xi.size != yi.size:
        raise ValueError("x and y must have the same length")
    table = np.zeros((xi.max(initial=-1) + 1, yi.max(initial=-1) + 1))
    np.add.at(table, (xi, yi), 1.0)
    return table


def discrete_entropy(x: np.ndarray) -> float:
    """Plug-in (histogram) entropy ``H(X) = -sum_x p(x) log p(x)`` of a discrete 1-D sample, in nats."""
    counts = np.unique(np.asarray(x).ravel(), return_counts=True)[1].astype(float)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def discrete_mutual_info(x: np.ndarray, y: np.ndarray) -> float:
    """Plug-in mutual information ``I(X; Y)`` of two discrete 1-D samples from their contingency table, in nats.

    Same estimator as ``sklearn.metrics.mutual_info_score`` (which disentanglement_lib uses):
    ``sum_xy p(x, y) log(p(x, y) / (p(x) p(y)))`` with empirical frequencies.
    """
    table = _contingency(x, y)
    n = table.sum()
    if n == 0:
        return 0.0
    pxy = table / n
    px = pxy.sum(axis=1, keepdims=True)
    py = pxy.sum(axis=0, keepdims=True)
    nz = pxy > 0
    mi = np.sum(pxy[nz] * (np.log(pxy[nz]) - np.log((px @ py)[nz])))
    return float(max(mi, 0.0))


def mutual_info_matrix(codes_discrete: np.ndarray, factors_discrete: np.ndarray) -> np.ndarray:
    """``(D, K)`` matrix of :func:`discrete_mutual_info` between every discrete latent and every discrete factor."""
    c = as_2d(codes_discrete, "codes_discrete", dtype=np.int64)
    f = as_2d(factors_discrete, "factors_discrete", dtype=np.int64)
    if c.shape[0] != f.shape[0]:
        raise ValueError("codes and factors must have the same number of rows")
    m = np.zeros((c.shape[1], f.shape[1]))
    for i in range(c.shape[1]):
        for k in range(f.shape[1]):
            m[i, k] = discrete_mutual_info(c[:, i], f[:, k])
    return m


# --------------------------------------------------------------------------------------------
# Factor-grid sampling (used by the beta-VAE and FactorVAE scores).
# --------------------------------------------------------------------------------------------


def check_grid(codes: np.ndarray, factor_indices: np.ndarray, factor_sizes: Sequence[int]) -> tuple:
    """Validate ``codes``/``factor_indices``/``factor_sizes`` and return them as arrays."""
    codes = as_2d(codes, "codes")
    idx = as_2d(factor_indices, "factor_indices", dtype=np.int64)
    sizes = np.asarray(factor_sizes, dtype=np.int64).ravel()
    if idx.shape[0] != codes.shape[0]:
        raise ValueError("codes and factor_indices must have the same number of rows")
    if idx.shape[1] != sizes.size:
        raise ValueError(f"factor_indices has {idx.shape[1]} columns but {sizes.size} factor_sizes given")
    if np.any(idx < 0) or np.any(idx >= sizes[None, :]):
        raise ValueError("factor_indices out of range of factor_sizes")
    return codes, idx, sizes


def group_by_value(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group row numbers by an integer column: returns ``(order, starts, counts)``.

    Rows with value ``v`` are ``order[starts[v]:starts[v] + counts[v]]``.
    """
    order = np.argsort(values, kind="stable")
    counts = np.bincount(values, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def sample_same_value(
    rng: np.random.Generator, values: np.ndarray, groups: tuple[np.ndarray, np.ndarray, np.ndarray], shape
) -> np.ndarray:
    """Uniformly draw row numbers sharing ``values`` (broadcast to ``shape``) of the grouped column."""
    order, starts, counts = groups
    values = np.broadcast_to(values, shape)
    u = rng.random(shape)
    offset = np.minimum((u * counts[values]).astype(np.int64), counts[values] - 1)
    return order[starts[values] + offset]
