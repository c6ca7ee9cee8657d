"""Correlation between single latents and single ground-truth factors.

Definitions: Pearson's product-moment correlation ``r = cov(z, v) / (std(z) std(v))``;
Spearman's rank correlation (Pearson's ``r`` of the ranks, ties given average ranks;
Spearman 1904); ``r2 = r**2``, the coefficient of determination of the best (least-squares)
linear fit of the factor on the latent (or vice versa). Undefined correlations (a constant
input) are reported as ``nan``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .utils import as_2d

__all__ = ["best_single_latent", "latent_factor_correlation"]


def _pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``x`` (N, D) with the vector ``y`` (N,)."""
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt(np.sum(xc**2, axis=0) * np.sum(yc**2))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(denom > 0, (xc.T @ yc) / np.where(denom > 0, denom, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def latent_factor_correlation(latent: np.ndarray, factor: np.ndarray) -> dict:
    """Pearson, Spearman and ``r2`` (= Pearson squared) between one latent and one factor.

    Returns:
      ``{"pearson": float, "spearman": float, "r2": float}``.
    """
    z = np.asarray(latent, dtype=float).ravel()
    v = np.asarray(factor, dtype=float).ravel()
    if z.size != v.size:
        raise ValueError("latent and factor must have the same length")
    pearson = float(_pearson_columns(z[:, None], v)[0])
    spearman = float(_pearson_columns(stats.rankdata(z)[:, None], stats.rankdata(v))[0])
    return {"pearson": pearson, "spearman": spearman, "r2": pearson**2}


def best_single_latent(codes: np.ndarray, factor: np.ndarray) -> dict:
    """The latent with the largest absolute Pearson correlation with ``factor``.

    Returns:
      ``{"index": int, "pearson": float, "abs_pearson": float, "r2": float}``; ``index`` is
      ``-1`` and the rest ``nan`` if no latent has a defined correlation.
    """
    x = as_2d(codes, "codes")
    v = np.asarray(factor, dtype=float).ravel()
    if x.shape[0] != v.size:
        raise ValueError("codes and factor must have the same number of rows")
    r = _pearson_columns(x, v)
    if not np.any(np.isfinite(r)):
        nan = float("nan")
        return {"index": -1, "pearson": nan, "abs_pearson": nan, "r2": nan}
    j = int(np.nanargmax(np.abs(r)))
    return {"index": j, "pearson": float(r[j]), "abs_pearson": float(abs(r[j])), "r2": float(r[j] ** 2)}
