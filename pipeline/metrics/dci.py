"""DCI: Disentanglement, Completeness and Informativeness.

Definition (Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of
Disentangled Representations", ICLR): a regressor predicts each factor ``v_k`` from the code
``z``; its feature importances form a ``(D, K)`` matrix ``R`` (``R[j, k]`` = importance of latent
``j`` for factor ``k``).

* Disentanglement of latent ``j``: ``D_j = 1 - H_K(P_j.)`` with ``P_jk = R_jk / sum_k R_jk`` and
  ``H_K`` the entropy with logarithm base ``K``; the total is ``sum_j rho_j D_j`` with
  ``rho_j = sum_k R_jk / sum_jk R_jk``.
* Completeness of factor ``k``: ``C_k = 1 - H_D(P~_.k)`` with ``P~_jk = R_jk / sum_j R_jk`` (log
  base ``D``); the total is weighted by the factor's share of importance
  ``sum_j R_jk / sum_jk R_jk``, as in disentanglement_lib (the paper averages ``C_k`` uniformly;
  both agree when factors carry equal importance).
* Informativeness: the prediction quality of the regressor on held-out data.

Regressor (our choice; the paper uses Lasso and random forests, disentanglement_lib gradient
boosted trees): per factor, a linear least-squares regression (ridge with a tiny penalty
``alpha`` for numerical stability only) of the standardised factor on the standardised codes,
both standardised with training statistics. ``R[j, k] = |W_jk|``, the absolute standardised
coefficient. Informativeness of factor ``k`` is the test-set ``R^2`` of that linear predictor,
clipped to ``[0, 1]``; the total is the mean over factors. All factors are treated as continuous
regression targets, so a categorical factor should be one-hot or ordinal-encoded by the caller.
A linear importance only sees monotone-ish (linear) relations: a latent that encodes a factor
non-monotonically gets little importance.
"""

from __future__ import annotations

import numpy as np

from .utils import as_2d

__all__ = ["dci", "importance_matrix_linear"]


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (x - mean) / std


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def importance_matrix_linear(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    alpha: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Importance matrix ``(D, K)`` = |standardised linear coefficients| and test ``R^2`` per factor (clipped)."""
    xtr, ytr = as_2d(codes_train, "codes_train"), as_2d(factors_train, "factors_train")
    xte, yte = as_2d(codes_test, "codes_test"), as_2d(factors_test, "factors_test")
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError("codes and factors must have matching numbers of rows")
    if xtr.shape[1] != xte.shape[1] or ytr.shape[1] != yte.shape[1]:
        raise ValueError("train and test must have the same numbers of latents and factors")
    xm, xs = _stats(xtr)
    ym, ys = _stats(ytr)
    a = _standardise(xtr, xm, xs)
    b = _standardise(ytr, ym, ys)
    n, d = a.shape
    gram = a.T @ a + alpha * n * np.eye(d)
    w = np.linalg.solve(gram, a.T @ b)  # (D, K), factor ~ codes, both standardised (no intercept needed)
    pred = _standardise(xte, xm, xs) @ w * ys + ym
    sse = np.sum((yte - pred) ** 2, axis=0)
    sst = np.sum((yte - yte.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, 0.0)
    return np.abs(w), np.clip(r2, 0.0, 1.0)


def _one_minus_entropy(p_unnorm: np.ndarray, base: int) -> np.ndarray:
    """``1 - H_base`` of each column of a non-negative matrix (columns normalised to sum 1)."""
    if base < 2:
        return np.ones(p_unnorm.shape[1])
    p = p_unnorm + 1e-11  # as disentanglement_lib (scipy.stats.entropy(importance + 1e-11))
    p = p / p.sum(axis=0, keepdims=True)
    return 1.0 - (-np.sum(p * np.log(p), axis=0) / np.log(base))


def dci_from_importance(importance: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Disentanglement and completeness (with per-code / per-factor values) of a ``(D, K)`` importance matrix."""
    r = np.asarray(importance, dtype=float)
    d, k = r.shape
    per_code = _one_minus_entropy(r.T, k)  # (D,)
    per_factor = _one_minus_entropy(r, d)  # (K,)
    w = r if r.sum() > 0 else np.ones_like(r)
    code_weight = w.sum(axis=1) / w.sum()
    factor_weight = w.sum(axis=0) / w.sum()
    return float(np.sum(per_code * code_weight)), float(np.sum(per_factor * factor_weight)), per_code, per_factor


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    alpha: float = 1e-6,
) -> dict:
    """DCI scores with linear-regression importances (see the module docstring).

    Args:
      codes_train, codes_test: ``(N, D)`` latent means.
      factors_train, factors_test: ``(N, K)`` factor values (treated as continuous targets).
      alpha: ridge penalty per sample on standardised codes (numerical stabiliser only).

    Returns:
      ``{"disentanglement": float, "completeness": float, "informativeness": float,
      "informativeness_per_factor": list[float], "disentanglement_per_code": list[float],
      "completeness_per_factor": list[float]}``.
    """
    importance, r2 = importance_matrix_linear(codes_train, factors_train, codes_test, factors_test, alpha)
    dis, com, per_code, per_factor = dci_from_importance(importance)
    return {
        "disentanglement": dis,
        "completeness": com,
        "informativeness": float(np.mean(r2)),
        "informativeness_per_factor": [float(x) for x in r2],
        "disentanglement_per_code": [float(x) for x in per_code],
        "completeness_per_factor": [float(x) for x in per_factor],
    }
