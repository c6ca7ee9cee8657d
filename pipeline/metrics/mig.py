"""Mutual Information Gap (MIG), discretised estimator.

Definition (Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS): for each ground-truth factor ``v_k``,

    MIG_k = ( I(z_{j1}; v_k) - I(z_{j2}; v_k) ) / H(v_k),

where ``j1`` and ``j2`` are the latents with the largest and second-largest mutual information
with ``v_k``; MIG is the mean of ``MIG_k`` over factors.

Estimator: the one of disentanglement_lib (Locatello et al. 2019,
``disentanglement_lib/evaluation/metrics/mig.py``): every latent mean is discretised into
``bins`` equal-width bins (:func:`~pipeline.metrics.utils.discretize`), and ``I`` and ``H`` are
plug-in estimates from contingency tables. Integer-typed factors (grid indices, identity labels)
and factors with at most ``bins`` distinct values are used as they are; other (continuous, float)
factors are discretised the same way as the latents
(:func:`~pipeline.metrics.utils.discretize_factors`). For the Monte-Carlo estimator of the
original paper on a full factor grid see :mod:`pipeline.metrics.mig_continuous`.
"""

from __future__ import annotations

import numpy as np

from .utils import as_2d, discrete_entropy, discretize, discretize_factors, mutual_info_matrix

__all__ = ["mig"]


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> dict:
    """Discretised Mutual Information Gap.

    Args:
      codes: ``(N, D)`` latent means.
      factors: ``(N, K)`` ground-truth factor values (integer/discrete used as is; continuous float
        columns with more than ``bins`` values are discretised).
      bins: number of equal-width bins for the latents (and for continuous factors).

    Returns:
      ``{"mig": float, "mig_per_factor": list[float]}``. A factor with zero entropy (constant)
      gets ``nan`` in ``mig_per_factor`` and is left out of the mean. With a single latent the
      second-largest MI is taken as 0.
    """
    codes = as_2d(codes, "codes")
    factors = np.asarray(factors)
    factors = factors[:, None] if factors.ndim == 1 else factors
    if codes.shape[0] != factors.shape[0]:
        raise ValueError("codes and factors must have the same number of rows")
    codes_d = discretize(codes, bins)
    factors_d = discretize_factors(factors, bins)
    m = mutual_info_matrix(codes_d, factors_d)  # (D, K)
    entropy = np.array([discrete_entropy(factors_d[:, k]) for k in range(factors_d.shape[1])])
    sorted_m = np.sort(m, axis=0)[::-1]
    second = sorted_m[1] if sorted_m.shape[0] > 1 else np.zeros(m.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        per_factor = np.where(entropy > 0, (sorted_m[0] - second) / entropy, np.nan)
    score = float(np.nanmean(per_factor)) if np.any(np.isfinite(per_factor)) else float("nan")
    return {"mig": score, "mig_per_factor": [float(v) for v in per_factor]}
