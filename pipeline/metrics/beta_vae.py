"""beta-VAE disentanglement score on a factor grid.

Definition (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR; implementation of disentanglement_lib ``beta_vae.py``): one training
point is made by drawing a factor ``k`` uniformly, then ``batch_size`` pairs of images
``(x1, x2)`` that share the value of factor ``k`` (all other factors random); its feature is the
mean absolute difference of the codes ``mean_b |z(x1_b) - z(x2_b)|`` (a ``D``-vector) and its
label is ``k``. A linear classifier is trained to predict ``k`` from the feature; the score is
its accuracy on the training points and on independently drawn evaluation points.

Grid version (pure function): instead of rendering new images, pairs are drawn from the provided
``codes`` via their ``factor_indices``: ``x1`` is a uniformly random row and ``x2`` a uniformly
random row with the same value of factor ``k`` (``x2 == x1`` is possible, as in the original). On
a full grid this is exactly the original sampling distribution. Only factors with at least two
observed values are drawn (fixing a constant factor is vacuous); labels keep the factor's column
number.

Classifier (as disentanglement_lib): ``sklearn.linear_model.LogisticRegression(random_state=seed)``
with its defaults (L2 penalty, ``C = 1``, L-BFGS, multinomial loss, ``max_iter=100``) on the
*unstandardised* features (current scikit-learn defaults; the disentanglement_lib study of 2019
predates scikit-learn 0.22, whose default was liblinear one-vs-rest with the same ``C``). Without
standardisation the fixed penalty ``C = 1`` acts on features at the codes' own scale, so the score
depends on that scale (in the tests, a perfect code shrunk 100-fold scores at chance); that is the
published metric.
``standardise=True`` also reports a variant with features standardised by the training points'
mean and standard deviation (scale-free; our earlier definition) under secondary keys.
Deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .utils import check_grid, group_by_value, sample_same_value

__all__ = ["beta_vae_score"]


def _features(
    codes: np.ndarray,
    idx: np.ndarray,
    groups: list,
    usable: np.ndarray,
    n_points: int,
    batch_size: int,
    rng: np.random.Generator,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    n, d = codes.shape
    labels = usable[rng.integers(usable.size, size=n_points)]
    feats = np.zeros((n_points, d))
    for p0 in range(0, n_points, chunk):
        lab = labels[p0 : p0 + chunk]
        rows1 = rng.integers(n, size=(lab.size, batch_size))
        rows2 = np.empty_like(rows1)
        for k in np.unique(lab):
            sel = lab == k
            rows2[sel] = sample_same_value(rng, idx[rows1[sel], k], groups[k], rows1[sel].shape)
        feats[p0 : p0 + chunk] = np.mean(np.abs(codes[rows1] - codes[rows2]), axis=1)
    return feats, labels


def beta_vae_score(
    codes: np.ndarray,
    factor_indices: np.ndarray,
    factor_sizes: Sequence[int],
    batch_size: int = 64,
    n_train: int = 10000,
    n_eval: int = 5000,
    seed: int | np.random.Generator = 0,
    standardise: bool = False,
) -> dict:
    """beta-VAE score (see the module docstring).

    Args:
      codes: ``(N, D)`` latent means.
      factor_indices: ``(N, K)`` integer grid indices of the codes.
      factor_sizes: ``K`` numbers of values per factor.
      batch_size: pairs averaged per feature vector.
      n_train, n_eval: numbers of training / evaluation feature vectors.
      seed: integer seed or ``np.random.Generator`` (sampling; an integer is also the classifier's
        ``random_state``).
      standardise: also fit the classifier on standardised features (secondary keys).

    Returns:
      ``{"train_accuracy": float, "eval_accuracy": float}`` (chance level is ``1 / #usable factors``), plus
      ``"train_accuracy_standardised"`` and ``"eval_accuracy_standardised"`` when ``standardise``.
    """
    codes, idx, sizes = check_grid(codes, factor_indices, factor_sizes)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    random_state = int(seed) if isinstance(seed, int | np.integer) else 0  # lbfgs does not draw from it
    groups = [group_by_value(idx[:, k], int(sizes[k])) for k in range(sizes.size)]
    usable = np.array([k for k in range(sizes.size) if np.count_nonzero(groups[k][2]) >= 2], dtype=np.int64)
    if usable.size == 0:
        raise ValueError("no factor takes at least two values")
    x_train, y_train = _features(codes, idx, groups, usable, n_train, batch_size, rng)
    x_eval, y_eval = _features(codes, idx, groups, usable, n_eval, batch_size, rng)
    variants = {"": LogisticRegression(random_state=random_state)}
    if standardise:
        variants["_standardised"] = make_pipeline(StandardScaler(), LogisticRegression(random_state=random_state))
    out = {}
    for suffix, model in variants.items():
        if usable.size == 1:  # one class: scikit-learn refuses to fit, the prediction is that class
            out[f"train_accuracy{suffix}"] = out[f"eval_accuracy{suffix}"] = 1.0
            continue
        model.fit(x_train, y_train)
        out[f"train_accuracy{suffix}"] = float(np.mean(model.predict(x_train) == y_train))
        out[f"eval_accuracy{suffix}"] = float(np.mean(model.predict(x_eval) == y_eval))
    return out
