"""Invariance of inactive latent groups within single-factor batches (DC-IGN).

DC-IGN (Kulkarni, Whitney, Kohli & Tenenbaum 2015, "Deep Convolutional Inverse Graphics
Network", NeurIPS) trains on mini-batches in which only one scene factor varies and asks the
latent group of that factor (e.g. ``z_azimuth``) to carry the change while the other groups stay
(near) constant. This measures how constant they actually are:

    ratio(b, g) = mean_{j in g} std_within_batch_b(z_j) / std_over_all_batches(z_j)

for every batch ``b`` and every latent group ``g`` that is *not* the batch's active group.
``0`` means perfectly invariant, ``~1`` means the group varies as much within a single-factor
batch as across the whole set. Standard deviations use ``ddof=0``; latents whose overall standard
deviation is 0 are left out (a group with no such latent gives ``nan`` for that batch and is left
out of the means).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["invariance_ratio"]


def invariance_ratio(
    codes_by_batch: Sequence[np.ndarray], group_slices: Mapping[str, slice], active_group: Sequence[str]
) -> dict:
    """Within-batch / overall std ratio of the inactive latent groups.

    Args:
      codes_by_batch: list of ``(B_i, D)`` code arrays, one per single-factor batch.
      group_slices: latent group name -> slice of latent columns, e.g. ``{"z_azimuth": slice(0, 1), ...}``.
      active_group: name of the group whose factor varies in each batch (same length as ``codes_by_batch``).

    Returns:
      ``{"ratio_<group>": float for every group (mean over batches where it is inactive; nan if never
      inactive), "mean_ratio": float (mean over all (batch, inactive group) pairs), "n_batches": float}``.
    """
    if len(codes_by_batch) != len(active_group):
        raise ValueError("codes_by_batch and active_group must have the same length")
    unknown = set(active_group) - set(group_slices)
    if unknown:
        raise ValueError(f"unknown active groups: {sorted(unknown)}")
    batches = [np.asarray(b, dtype=float) for b in codes_by_batch]
    if not batches:
        raise ValueError("no batches given")
    overall_std = np.concatenate(batches, axis=0).std(axis=0)
    per_group: dict[str, list[float]] = {name: [] for name in group_slices}
    for codes, active in zip(batches, active_group, strict=True):
        within = codes.std(axis=0)
        for name, sl in group_slices.items():
            if name == active:
                continue
            o, w = overall_std[sl], within[sl]
            ok = o > 0
            if np.any(ok):
                per_group[name].append(float(np.mean(w[ok] / o[ok])))
    out: dict = {}
    every: list[float] = []
    for name, values in per_group.items():
        out[f"ratio_{name}"] = float(np.mean(values)) if values else float("nan")
        every.extend(values)
    out["mean_ratio"] = float(np.mean(every)) if every else float("nan")
    out["n_batches"] = float(len(batches))
    return out
