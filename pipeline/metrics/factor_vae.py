"""FactorVAE disentanglement score on a factor grid.

Definition (Kim & Mnih 2018, "Disentangling by Factorising", ICML; implementation of
disentanglement_lib ``factor_vae.py``): every latent is normalised by its empirical standard
deviation over the whole data set; collapsed latents are pruned. One vote is made by drawing a
factor ``k`` uniformly and a batch of ``batch_size`` images that all share one (random) value of
factor ``k``; the active latent with the smallest normalised within-batch variance
``Var_batch(z_j) / Var_all(z_j)`` votes for ``k``. The classifier is the majority vote: each
latent predicts the factor it received most training votes for; accuracy is the fraction of
votes (training votes, or independently drawn evaluation votes) whose factor equals the
prediction of their latent.

Details:

* Variances use ``ddof=1``; the global variance is taken over all provided codes (disentanglement_lib
  uses a random sample of 10,000 images).
* Pruning follows disentanglement_lib's ``_prune_dims`` with the threshold ``0.05`` of its shipped
  configuration: a latent is kept if its global *standard deviation* ``sqrt(Var_all(z_j)) >= 0.05``
  (``prune_threshold``).
* Grid sampling: the fixed value is that of a uniformly drawn row, and the batch is drawn uniformly
  (with replacement) among the rows with that value -- on a full grid the original distribution.
  Only factors with at least two observed values are drawn.
* With no active latent the score is 0, as in disentanglement_lib.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .utils import check_grid, group_by_value, sample_same_value

__all__ = ["factor_vae_score"]


def _votes(
    codes_active: np.ndarray,
    global_var: np.ndarray,
    idx: np.ndarray,
    groups: list,
    usable: np.ndarray,
    n_factors: int,
    n_points: int,
    batch_size: int,
    rng: np.random.Generator,
    chunk: int = 256,
) -> np.ndarray:
    n, d = codes_active.shape
    votes = np.zeros((n_factors, d), dtype=np.int64)
    labels = usable[rng.integers(usable.size, size=n_points)]
    for p0 in range(0, n_points, chunk):
        lab = labels[p0 : p0 + chunk]
        anchor = rng.integers(n, size=lab.size)
        rows = np.empty((lab.size, batch_size), dtype=np.int64)
        for k in np.unique(lab):
            sel = lab == k
            values = np.repeat(idx[anchor[sel], k][:, None], batch_size, axis=1)
            rows[sel] = sample_same_value(rng, values, groups[k], values.shape)
        local_var = np.var(codes_active[rows], axis=1, ddof=1)  # (P, D_active)
        argmin = np.argmin(local_var / global_var[None, :], axis=1)
        np.add.at(votes, (lab, argmin), 1)
    return votes


def factor_vae_score(
    codes: np.ndarray,
    factor_indices: np.ndarray,
    factor_sizes: Sequence[int],
    batch_size: int = 64,
    n_train: int = 10000,
    n_eval: int = 5000,
    seed: int | np.random.Generator = 0,
    prune_threshold: float = 0.05,
) -> dict:
    """FactorVAE score (see the module docstring).

    Args:
      codes: ``(N, D)`` latent means.
      factor_indices: ``(N, K)`` integer grid indices of the codes.
      factor_sizes: ``K`` numbers of values per factor.
      batch_size: images per vote (>= 2).
      n_train, n_eval: numbers of training / evaluation votes.
      seed: integer seed or ``np.random.Generator``.
      prune_threshold: minimum global standard deviation of an active latent.

    Returns:
      ``{"train_accuracy": float, "eval_accuracy": float, "num_active_dims": float}``.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2")
    codes, idx, sizes = check_grid(codes, factor_indices, factor_sizes)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not np.any(active):
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    groups = [group_by_value(idx[:, k], int(sizes[k])) for k in range(sizes.size)]
    usable = np.array([k for k in range(sizes.size) if np.count_nonzero(groups[k][2]) >= 2], dtype=np.int64)
    if usable.size == 0:
        raise ValueError("no factor takes at least two values")
    codes_active, var_active = codes[:, active], global_var[active]
    args = (var_active, idx, groups, usable, int(sizes.size))
    train_votes = _votes(codes_active, *args, n_train, batch_size, rng)
    eval_votes = _votes(codes_active, *args, n_eval, batch_size, rng)
    classifier = np.argmax(train_votes, axis=0)  # factor predicted by each active latent
    cols = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[classifier, cols].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, cols].sum() / eval_votes.sum()),
        "num_active_dims": float(np.count_nonzero(active)),
    }
