"""The DC-IGN training trick: clamp inactive latents to their batch mean.

Forward: every latent of an inactive group is replaced by its mean over the batch, so
the decoder can only explain the batch's variation through the active group.
Backward: the active latents get their true gradient; each clamped latent's gradient is
replaced by ``strength * (z - z_mean)``, the gradient of ``strength * 1/2 ||z - z_mean||^2``,
so minimising the loss pulls the encoder's inactive outputs together (Kulkarni et al. 2015, sec. 3.1).
``through_mean`` adds the true gradient of the batch mean the decoder saw (every image gets the
batch's average), so a clamped group also learns from reconstruction; the paper discards it.
"""

from __future__ import annotations

import torch


class ClampToBatchMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, clamped: torch.Tensor, strength: float, through_mean: bool) -> torch.Tensor:
        # z: (B, D) latent codes; clamped: (D,) bool, True for latents of inactive groups
        mean = z.mean(dim=0, keepdim=True)  # (1, D)
        ctx.save_for_backward(z - mean, clamped)
        ctx.strength = strength
        ctx.through_mean = through_mean
        return torch.where(clamped, mean, z)  # (B, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        deviation, clamped = ctx.saved_tensors  # (B, D), (D,)
        pull = ctx.strength * deviation  # (B, D)
        if ctx.through_mean:  # every output row is the mean, so each input gets the rows' average gradient
            pull = pull + grad.mean(dim=0, keepdim=True)
        # Otherwise the clamped outputs' own gradient is discarded (the paper's replacement).
        return torch.where(clamped, pull, grad), None, None, None


def clamp_to_batch_mean(
    z: torch.Tensor, clamped: torch.Tensor, strength: float, through_mean: bool = False
) -> torch.Tensor:
    """Clamp ``z[:, clamped]`` to the batch mean; their gradient becomes ``strength * (z - mean)``,
    plus the batch mean's true gradient when ``through_mean``."""
    return ClampToBatchMean.apply(z, clamped, strength, through_mean)


def invariance_penalty(z: torch.Tensor, clamped: torch.Tensor) -> torch.Tensor:
    """Per-image ``1/2 ||z - mean||^2`` over the clamped latents, averaged over the batch (for logging)."""
    deviation = (z - z.mean(dim=0, keepdim=True))[:, clamped]  # (B, D_inactive)
    return 0.5 * deviation.pow(2).sum(dim=1).mean()
