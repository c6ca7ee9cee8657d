"""DCI: Disentanglement, Completeness and Informativeness.

Definition (Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of
Disentangled Representations", ICLR): a predictor of each factor ``v_k`` from the code ``z`` gives
feature importances that form a ``(D, K)`` matrix ``R`` (``R[j, k]`` = importance of latent ``j``
for factor ``k``).

* Disentanglement of latent ``j``: ``D_j = 1 - H_K(P_j.)`` with ``P_jk = R_jk / sum_k R_jk`` and
  ``H_K`` the entropy with logarithm base ``K``; the total is ``sum_j rho_j D_j`` with
  ``rho_j = sum_k R_jk / sum_jk R_jk``.
* Completeness of factor ``k``: ``C_k = 1 - H_D(P~_.k)`` with ``P~_jk = R_jk / sum_j R_jk`` (log
  base ``D``); the total is weighted by the factor's share of importance
  ``sum_j R_jk / sum_jk R_jk``, as in disentanglement_lib (the paper averages ``C_k`` uniformly;
  both agree when factors carry equal importance).
* Informativeness: the prediction quality of the predictor on held-out data.

Standard variant, :func:`dci` (disentanglement_lib ``evaluation/metrics/dci.py``,
``compute_importance_gbt``): factors are discrete labels (grid indices, identity ids); per factor
a ``sklearn.ensemble.GradientBoostingClassifier`` (default settings, ``n_estimators=100``) is fit
on the codes, ``R[:, k]`` is its impurity-based ``feature_importances_`` and the informativeness of
factor ``k`` is its test accuracy (chance level about ``1 / #classes`` for balanced labels, not 0).
This is the standard: trees see any relation between a latent and a factor, monotone or not, and a
latent that carries nothing gets close to zero importance.

Secondary variant, :func:`dci_linear` (our earlier choice; the paper also reports Lasso): per
factor, a linear least-squares regression (ridge with a tiny penalty ``alpha`` for numerical
stability only) of the standardised factor on the standardised codes, both standardised with
training statistics; ``R[j, k] = |W_jk|`` and informativeness is the test ``R^2`` clipped to
``[0, 1]``. Factors are continuous regression targets. Its importances never vanish on pure noise
latents (the absolute coefficients of noise leave a floor of entropy that caps D and C), and it
cannot see a latent that encodes a factor non-monotonically (e.g. ``z = (v - mid)^2`` has zero
linear correlation with ``v`` on a symmetric grid).
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier

from .utils import as_2d

__all__ = ["dci", "dci_from_importance", "dci_linear", "importance_matrix_gbt", "importance_matrix_linear"]


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (x - mean) / std


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def _check_split(codes_train, factors_train, codes_test, factors_test, factor_dtype=float) -> tuple:
    xtr, ytr = as_2d(codes_train, "codes_train"), as_2d(factors_train, "factors_train", dtype=factor_dtype)
    xte, yte = as_2d(codes_test, "codes_test"), as_2d(factors_test, "factors_test", dtype=factor_dtype)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError("codes and factors must have matching numbers of rows")
    if xtr.shape[1] != xte.shape[1] or ytr.shape[1] != yte.shape[1]:
        raise ValueError("train and test must have the same numbers of latents and factors")
    return xtr, ytr, xte, yte


def importance_matrix_linear(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    alpha: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Importance matrix ``(D, K)`` = |standardised linear coefficients| and test ``R^2`` per factor (clipped)."""
    xtr, ytr, xte, yte = _check_split(codes_train, factors_train, codes_test, factors_test)
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


def _fit_factor_gbt(xtr, y, xte, yte, seed: int, n_estimators: int) -> tuple[np.ndarray, float, float]:
    """One factor's classifier: (importances (D,), train accuracy, test accuracy)."""
    if np.unique(y).size < 2:
        return np.zeros(xtr.shape[1]), 1.0, float(np.mean(yte == y[0])) if len(yte) else np.nan
    model = GradientBoostingClassifier(random_state=seed, n_estimators=n_estimators)
    model.fit(xtr, y)
    acc_test = np.mean(model.predict(xte) == yte) if len(yte) else np.nan
    return np.abs(model.feature_importances_), float(np.mean(model.predict(xtr) == y)), float(acc_test)


def importance_matrix_gbt(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    seed: int = 0,
    n_estimators: int = 100,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient-boosted-tree importances ``(D, K)`` and train / test accuracy ``(K,)`` per factor.

    A factor with a single value in the training split cannot be classified: its importance column
    is zero and it is predicted as that value. ``n_jobs`` factors are fit at once, in threads (the
    tree builder releases the GIL); each fit is independent, so the result does not depend on it.
    """
    xtr, ytr, xte, yte = _check_split(codes_train, factors_train, codes_test, factors_test, factor_dtype=None)
    k = ytr.shape[1]
    fits = Parallel(n_jobs=n_jobs, backend="threading")(
        delayed(_fit_factor_gbt)(xtr, ytr[:, f], xte, yte[:, f], seed, n_estimators) for f in range(k)
    )
    importance = np.stack([imp for imp, _, _ in fits], axis=1)  # (D, K)
    acc_train = np.array([a for _, a, _ in fits])
    acc_test = np.array([a for _, _, a in fits])
    return importance, acc_train, acc_test


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    seed: int = 0,
    n_estimators: int = 100,
    n_jobs: int = 1,
) -> dict:
    """DCI with gradient-boosted-tree importances, as disentanglement_lib (the standard; see the module docstring).

    Cost: ``n_estimators`` regression trees per class per factor (one per stage for a binary factor),
    about 1.5 s per class on one core for 1,350 rows x 32 latents at ``n_estimators=100`` (75 s for
    factors with 30, 9, 5 and 5 values).

    Args:
      codes_train, codes_test: ``(N, D)`` latent means.
      factors_train, factors_test: ``(N, K)`` discrete factor labels (grid indices, identity ids; float columns
        must hold a few integral values, as scikit-learn refuses continuous class labels).
      seed: ``random_state`` of the classifiers.
      n_estimators: boosting stages per classifier (disentanglement_lib: scikit-learn's default, 100).
      n_jobs: factors fit at once (threads); the result is the same for any value.

    Returns:
      ``{"disentanglement": float, "completeness": float, "informativeness": float (mean test accuracy),
      "informativeness_train": float (mean train accuracy), "informativeness_per_factor": list[float] (K, test
      accuracy), "disentanglement_per_code": list[float] (D), "completeness_per_factor": list[float] (K),
      "importance": list[list[float]] (D x K)}``.
    """
    importance, acc_train, acc_test = importance_matrix_gbt(
        codes_train, factors_train, codes_test, factors_test, seed=seed, n_estimators=n_estimators, n_jobs=n_jobs
    )
    dis, com, per_code, per_factor = dci_from_importance(importance)
    return {
        "disentanglement": dis,
        "completeness": com,
        "informativeness": float(np.mean(acc_test)),
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_per_factor": [float(x) for x in acc_test],
        "disentanglement_per_code": [float(x) for x in per_code],
        "completeness_per_factor": [float(x) for x in per_factor],
        "importance": importance.tolist(),
    }


def dci_linear(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    alpha: float = 1e-6,
) -> dict:
    """DCI with linear-regression importances (secondary variant; see the module docstring).

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
