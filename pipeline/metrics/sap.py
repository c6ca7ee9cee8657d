"""Separated Attribute Predictability (SAP).

Definition (Kumar, Sattigeri & Balakrishnan 2018, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations", ICLR): build a ``(D, K)`` score matrix ``S`` where
``S[j, k]`` is how well latent ``j`` alone predicts factor ``k`` -- the ``R^2`` of a linear
regression for continuous factors, the classification accuracy for discrete ones. For each
factor take the difference between the top two entries of its column; SAP is the mean of these
gaps over factors.

Implementation details:

* ``continuous=True``: each single-latent linear fit ``v_k ~ a + b z_j`` is fitted on the
  training split and ``S[j, k]`` is its ``R^2`` on the test split, clipped at 0. (disentanglement_lib
  uses the in-sample squared correlation on the training split; for a linear fit the two agree in the
  large-sample limit.) Latents with (near) zero training variance score 0, as in disentanglement_lib.
* ``continuous=False``: ``S[j, k]`` is the test accuracy of a one-dimensional nearest-class-mean
  classifier on latent ``j`` trained on the training split (disentanglement_lib uses a
  ``LinearSVC(C=0.01, class_weight="balanced")``; scikit-learn is not a dependency here).
"""

from __future__ import annotations

import numpy as np

from .utils import as_2d

__all__ = ["sap", "sap_score_matrix"]


def _r2_matrix(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> np.ndarray:
    xm, ym = xtr.mean(axis=0), ytr.mean(axis=0)
    xc, yc = xtr - xm, ytr - ym
    var_x = np.sum(xc**2, axis=0)  # (D,)
    cov = xc.T @ yc  # (D, K)
    ok = var_x > 1e-12 * xtr.shape[0]
    slope = np.where(ok[:, None], cov / np.where(ok, var_x, 1.0)[:, None], 0.0)  # (D, K)
    intercept = ym[None, :] - slope * xm[:, None]
    # prediction of factor k from latent j on the test set: (N, D, K) evaluated column-wise to save memory
    d, k = slope.shape
    scores = np.zeros((d, k))
    sst = np.sum((yte - yte.mean(axis=0)) ** 2, axis=0)
    for j in range(d):
        if not ok[j]:
            continue
        pred = xte[:, j : j + 1] * slope[j][None, :] + intercept[j][None, :]
        sse = np.sum((yte - pred) ** 2, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores[j] = np.where(sst > 0, 1.0 - sse / sst, 0.0)
    return np.clip(scores, 0.0, None)


def _accuracy_matrix(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> np.ndarray:
    d, k = xtr.shape[1], ytr.shape[1]
    scores = np.zeros((d, k))
    for f in range(k):
        classes, ytr_i = np.unique(ytr[:, f], return_inverse=True)
        counts = np.bincount(ytr_i, minlength=classes.size)
        for j in range(d):
            means = np.bincount(ytr_i, weights=xtr[:, j], minlength=classes.size) / counts
            pred = classes[np.argmin(np.abs(xte[:, j : j + 1] - means[None, :]), axis=1)]
            scores[j, f] = np.mean(pred == yte[:, f])
    return scores


def sap_score_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    continuous: bool = True,
) -> np.ndarray:
    """The ``(D, K)`` single-latent predictability matrix ``S`` of SAP."""
    xtr, ytr = as_2d(codes_train, "codes_train"), as_2d(factors_train, "factors_train")
    xte, yte = as_2d(codes_test, "codes_test"), as_2d(factors_test, "factors_test")
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError("codes and factors must have matching numbers of rows")
    if xtr.shape[1] != xte.shape[1] or ytr.shape[1] != yte.shape[1]:
        raise ValueError("train and test must have the same numbers of latents and factors")
    if continuous:
        return _r2_matrix(xtr, ytr, xte, yte)
    return _accuracy_matrix(xtr, ytr, xte, yte)


def sap(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    continuous: bool = True,
) -> dict:
    """SAP score (see the module docstring).

    Returns:
      ``{"sap": float, "sap_per_factor": list[float]}``; with a single latent the second score is 0.
    """
    scores = sap_score_matrix(codes_train, factors_train, codes_test, factors_test, continuous)
    sorted_s = np.sort(scores, axis=0)[::-1]
    second = sorted_s[1] if sorted_s.shape[0] > 1 else np.zeros(scores.shape[1])
    gaps = sorted_s[0] - second
    return {"sap": float(np.mean(gaps)), "sap_per_factor": [float(x) for x in gaps]}
