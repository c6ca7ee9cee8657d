"""Training data: render batches held once as a uint8 tensor, and the batch schedule.

The schedule is a pure function of (seed, step, slot): step ``s`` uses ``slots_per_step``
slots (batches_per_step x world size); slot ``j`` draws its latent group by ``sweep_ratio``
(restricted to groups present), a render batch of that group, and the reparameterisation
noise, all from ``np.random.default_rng([seed, s, j])``. So a resumed run, a run with more
processes, or a single process accumulating the same slots all see the same batches.
The entangled baselines draw B random images from anywhere instead, with no active group;
Ada-GVAE (``pairs``) takes one render batch of a group, shuffled, as pairs ``(i, i + B/2)`` of
images that share every factor but the swept one, with no active group (an odd last image is
left out). FactorVAE's per-dimension permutations (``permutations``) are drawn after the noise,
and the swap partners after those (``edit``: the share of images given another image of the batch
as partner in the clamped steps before ``edit_until``; ``swap``: in the decoder phase after them),
so that neither changes the draws before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcign.config import GROUPS, ConfigError
from render.shards import RenderedDataset, ShardError, load_dataset
from render.vocabulary import GREY_WEIGHTS, SWEEP_GROUP


@dataclass
class Slot:
    images: np.ndarray  # (B,) flat image indices into (N * B) for this minibatch
    active: str | None  # active latent group; None for the entangled baseline
    eps: np.ndarray  # (B, D) float32 reparameterisation noise
    perm: np.ndarray | None = None  # (B, D) int64: column d of the code is permuted by perm[:, d] (FactorVAE)
    partner: np.ndarray | None = None  # (B,) int64: whose inactive groups image i is decoded with (edit, decoder phase)


class TrainingData:
    """All images as one uint8 tensor (N * B, 1, R, R); slots index it per step."""

    def __init__(self, dataset: RenderedDataset, device: torch.device | str = "cpu"):
        images = dataset.images
        if images.ndim == 5:  # RGB renders
            images = np.rint(images.astype(np.float32) @ GREY_WEIGHTS).astype(np.uint8)
        n, b, r = images.shape[:3]
        self.n_batches, self.batch_size, self.resolution = n, b, r
        self.sweep = np.asarray(dataset.sweep).astype(str)  # (N,)
        unknown = sorted(set(self.sweep) - set(SWEEP_GROUP))
        if unknown:
            raise ShardError(f"unknown sweep type(s) in the data: {', '.join(unknown)}")
        self.group = np.array([SWEEP_GROUP[s] for s in self.sweep])  # (N,)
        flat = torch.from_numpy(np.ascontiguousarray(images.reshape(n * b, 1, r, r)))
        self.images = flat.to(device)  # (N * B, 1, R, R) uint8, on the training device when it fits

    def batch_indices(self, group: str) -> np.ndarray:
        return np.flatnonzero(self.group == group)

    def fetch(self, slot: Slot, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, R, R) float images in [0, 1] and (B, D) noise on ``device``."""
        idx = torch.from_numpy(slot.images).to(self.images.device)
        x = self.images.index_select(0, idx).to(device, non_blocking=True).float().div_(255)  # (B, 1, R, R)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(slot.eps).to(device, non_blocking=True)


def fetch_optional(array: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    """A slot's optional index array (``perm``, ``partner``) on ``device``, or None."""
    return None if array is None else torch.from_numpy(array).to(device)


class Schedule:
    """Which images, active group and noise every slot of every step uses."""

    def __init__(
        self,
        data: TrainingData,
        ratio: dict[str, float],
        seed: int,
        latent: int,
        entangled: bool,
        pairs: bool = False,
        permutations: bool = False,
        swap: float = 0.0,
        edit: float = 0.0,
        edit_until: int = 0,
    ):
        """``entangled``: random images; ``pairs``: a shuffled render batch (see the module doc)."""
        self.data, self.seed, self.latent, self.entangled = data, seed, latent, entangled
        self.pairs, self.permutations, self.swap = pairs, permutations, swap
        self.edit, self.edit_until = edit, edit_until
        self.by_group = {g: data.batch_indices(g) for g in GROUPS}
        present = [g for g in GROUPS if len(self.by_group[g]) and ratio.get(g, 0) > 0]
        if not entangled and not present:
            have = ", ".join(sorted(set(data.group))) or "none"
            raise ConfigError(f"sweep_ratio gives no weight to the groups present in the data ({have})")
        self.groups = present
        w = np.array([ratio[g] for g in present], dtype=np.float64)
        self.p = w / w.sum() if len(w) else w

    def slot(self, step: int, j: int) -> Slot:
        rng = np.random.default_rng([self.seed, step, j])
        b, total = self.data.batch_size, self.data.n_batches * self.data.batch_size
        if self.entangled:
            images, active = rng.choice(total, size=b, replace=False), None
        else:
            active = self.groups[rng.choice(len(self.groups), p=self.p)]
            batch = int(rng.choice(self.by_group[active]))
            images = np.arange(batch * b, (batch + 1) * b)
            if self.pairs:  # shuffled pairs of one batch; no group is clamped
                images, active = rng.permutation(images)[: b - b % 2], None
        n = len(images)
        eps = rng.standard_normal((n, self.latent), dtype=np.float32)
        perm = np.argsort(rng.random((n, self.latent)), axis=0) if self.permutations else None
        partner = None
        share = self.edit if step < self.edit_until else self.swap
        if share > 0 and active is not None:  # another image of the batch for a `share` of them
            other = (np.arange(n) + rng.integers(1, n, size=n)) % n
            partner = np.where(rng.random(n) < share, other, np.arange(n))
        return Slot(images=images, active=active, eps=eps, perm=perm, partner=partner)

    def slots(self, step: int, first: int, count: int) -> list[Slot]:
        """Slots ``first .. first + count - 1`` of ``step`` (a rank takes its own contiguous range)."""
        return [self.slot(step, j) for j in range(first, first + count)]


def load_training_data(dirs: list[Path], device: torch.device | str = "cpu") -> TrainingData:
    """Load sweep directories; raise ShardError for a missing or empty dataset."""
    if not dirs:
        raise ShardError("no dataset directories given (--data)")
    dataset = load_dataset([Path(d) for d in dirs])
    if dataset.n_batches == 0 or dataset.batch_size == 0:
        raise ShardError(f"dataset {', '.join(map(str, dirs))} holds no images")
    if dataset.batch_size < 2:
        raise ShardError(
            f"{', '.join(map(str, dirs))}: rendered in batches of {dataset.batch_size} image, but clamping to a batch"
            " mean needs at least 2; render it again with --batch-size 2 or more (render.batch_size)"
        )
    return TrainingData(dataset, device)
