"""The DC-IGN training trick: clamp inactive latents to one code for the whole batch.

Forward: every latent of an inactive group is replaced by its batch mean (the paper) or by the
first image's value (``to="first"``, the released code), so the decoder can only explain the
batch's variation through the active group.
Backward: the active latents get their true gradient; each clamped latent's gradient is
replaced by ``strength * (z - z_mean)``, the gradient of ``strength * 1/2 ||z - z_mean||^2``,
so minimising the loss pulls the encoder's inactive outputs together (Kulkarni et al. 2015, sec. 3.1).
``through_mean`` adds the true gradient of the clamped value the decoder saw (the batch's
average gradient to every image for the mean, the batch's summed gradient to the first image),
so a clamped group also learns from reconstruction; the paper discards it.
"""

from __future__ import annotations

import torch

CLAMP_TARGETS = ("mean", "first")


class ClampToBatchMean(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, z: torch.Tensor, clamped: torch.Tensor, strength: float, through_mean: bool, to: str
    ) -> torch.Tensor:
        # z: (B, D) latent codes; clamped: (D,) bool, True for latents of inactive groups
        mean = z.mean(dim=0, keepdim=True)  # (1, D)
        ctx.save_for_backward(z - mean, clamped)
        ctx.strength = strength
        ctx.through_mean = through_mean
        ctx.to = to
        return torch.where(clamped, mean if to == "mean" else z[:1], z)  # (B, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        deviation, clamped = ctx.saved_tensors  # (B, D), (D,)
        pull = ctx.strength * deviation  # (B, D)
        if ctx.through_mean:  # the gradient of the clamped value, shared as autograd would share it
            if ctx.to == "mean":  # every output row is the mean: each input gets the rows' average
                pull = pull + grad.mean(dim=0, keepdim=True)
            else:  # every output row is row 0: it gets their sum
                pull = pull.clone()
                pull[0] += grad.sum(dim=0)
        # Otherwise the clamped outputs' own gradient is discarded (the paper's replacement).
        return torch.where(clamped, pull, grad), None, None, None, None


def clamp_to_batch_mean(
    z: torch.Tensor, clamped: torch.Tensor, strength: float, through_mean: bool = False, to: str = "mean"
) -> torch.Tensor:
    """Clamp ``z[:, clamped]`` to the batch mean (or, ``to="first"``, to the first row); their
    gradient becomes ``strength * (z - mean)``, plus the clamped value's true gradient when ``through_mean``."""
    if to not in CLAMP_TARGETS:
        raise ValueError(f"clamp target must be one of {', '.join(CLAMP_TARGETS)}, got {to!r}")
    return ClampToBatchMean.apply(z, clamped, strength, through_mean, to)


def invariance_penalty(z: torch.Tensor, clamped: torch.Tensor) -> torch.Tensor:
    """Per-image ``1/2 ||z - mean||^2`` over the clamped latents, averaged over the batch (for logging)."""
    deviation = (z - z.mean(dim=0, keepdim=True))[:, clamped]  # (B, D_inactive)
    return 0.5 * deviation.pow(2).sum(dim=1).mean()
