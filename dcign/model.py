"""The DC-IGN network: a convolutional VAE whose latent code is split into named groups.

Encoder: len(filters) x (conv k x k "same" -> ReLU -> 2x2 max-pool), then one linear layer to
the mean and log-variance of the code. Decoder: linear back to the last feature map, then
len(filters) x (nearest-neighbour upsample x2 -> conv 7x7 -> ReLU) mirroring the encoder, then a
7x7 conv to the image. The decoder returns logits; ``decode`` applies the sigmoid. Each upsample
and the conv after it run as one transposed convolution (``UpsampleConv2d``): the same function
and parameters, a third of the multiply-adds.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dcign.clamp import clamp_to_batch_mean, invariance_penalty
from dcign.config import GROUPS, ModelConfig
from dcign.objectives import ada_gvae_posteriors


class UpsampleConv2d(nn.Conv2d):
    """Nearest-neighbour x2 upsampling, then a k x k "same" convolution (k odd), as one op.

    On the upsampled map each output pixel's k x k window reads only 4 x 4 input pixels (k = 7),
    most of them twice. Summing the taps that read the same input pixel folds the k x k kernel
    into a (k+1) x (k+1) kernel of a stride-2 transposed convolution: the same function and the
    same parameters (``weight`` is the k x k conv's), about a third of the multiply-adds at k = 7.
    """

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(c_in, c_out, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.pad(self.weight.flip(-2, -1), (1, 1, 1, 1))  # (C_out, C_in, k+2, k+2), flipped: conv -> transposed conv
        w = g[..., 1:, 1:] + g[..., :-1, 1:] + g[..., 1:, :-1] + g[..., :-1, :-1]  # (C_out, C_in, k+1, k+1)
        # (N, C_in, H, W) -> (N, C_out, 2H, 2W)
        return F.conv_transpose2d(x, w.transpose(0, 1), self.bias, stride=2, padding=self.padding[0])


def _conv_block(cfg: ModelConfig, c_in: int, c_out: int, k: int, upsample: bool = False) -> list[nn.Module]:
    """(upsample x2 ->) conv k x k "same" (-> GroupNorm when cfg.norm == "group") -> ReLU."""
    conv = UpsampleConv2d(c_in, c_out, k) if upsample else nn.Conv2d(c_in, c_out, k, padding=k // 2)
    layers: list[nn.Module] = [conv]
    if cfg.norm == "group":  # per-image statistics: a sweep batch's shared face leaves them unchanged
        layers.append(nn.GroupNorm(cfg.norm_groups_for(c_out), c_out))
    return [*layers, nn.ReLU()]


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], cfg.channels
        for f in cfg.encoder_widths:
            layers += [*_conv_block(cfg, c, f, cfg.enc_kernel), nn.MaxPool2d(2)]
            c = f
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c * cfg.feature_size**2, 2 * cfg.latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(x)  # (N, E_last, S, S), E = encoder_widths
        h = self.fc(h.flatten(1))  # (N, 2D)
        mu, logvar = h.float().chunk(2, dim=1)  # (N, D) each, fp32 even under autocast
        return mu, logvar


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.fc = nn.Linear(cfg.latent, cfg.filters[-1] * cfg.feature_size**2)
        # Mirror the encoder: (96, 64, 32) encodes, 32 -> 64 -> 96 -> 96 decodes, then -> image.
        outs = [*reversed(cfg.filters[:-1]), cfg.filters[0]]
        layers, c, k = [], cfg.filters[-1], cfg.dec_kernel
        for f in outs:
            layers += _conv_block(cfg, c, f, k, upsample=True)
            c = f
        self.ups = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, cfg.channels, k, padding=k // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        cfg, s = self.cfg, self.cfg.feature_size
        h = F.relu(self.fc(z)).view(-1, cfg.filters[-1], s, s)  # (N, F_last, S, S)
        h = self.ups(h)  # (N, F_0, S * 2^L, S * 2^L)
        if h.shape[-1] != cfg.resolution:  # floor pooling lost pixels (150 -> 18 -> 144): stretch back
            h = F.interpolate(h, size=(cfg.resolution, cfg.resolution), mode="bilinear", align_corners=False)
        return self.out(h)  # (N, C, R, R) logits


class Output(NamedTuple):
    logits: torch.Tensor  # (N, C, R, R) decoder output before the sigmoid
    mu: torch.Tensor  # (N, D)
    logvar: torch.Tensor  # (N, D)
    z: torch.Tensor  # (N, D) sampled code, before clamping
    own_logits: torch.Tensor | None = None  # (N, C, R, R) decoded from mu unclamped, its gradient to the decoder only
    edit_logits: torch.Tensor | None = None  # (M, C, R, R) the edited codes of the images with a partner (edit_rows)
    edit_rows: torch.Tensor | None = None  # (M,) which images of the batch edit_logits reconstruct


class DCIGN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg.validate()
        self.groups: dict[str, slice] = cfg.groups
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Group id of every latent, to build the clamp mask of an active group on the right device.
        group_id = torch.cat([torch.full((sl.stop - sl.start,), i) for i, sl in enumerate(self.groups.values())])
        self.register_buffer("group_id", group_id, persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear) and cfg.init_std > 0:
                nn.init.normal_(m.weight, std=cfg.init_std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d) and cfg.conv_init == "he":  # variance-preserving through ReLUs
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, R, R) in [0, 1] -> mean and log-variance of q(z|x), (N, D) each."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, D) -> images (N, C, R, R) in [0, 1]."""
        return torch.sigmoid(self.decoder(z).float())

    def clamp_mask(self, active: str) -> torch.Tensor:
        """(D,) bool, True for the latents of every group except ``active``."""
        return self.group_id != GROUPS.index(active)

    def edit_code(self, mu: torch.Tensor, active: str, partner: torch.Tensor) -> torch.Tensor:
        """The code re-rendering makes, (N, D): each image's own ``active`` group, its ``partner``'s other groups."""
        return torch.where(self.clamp_mask(active), mu[partner], mu)

    def forward(
        self,
        x: torch.Tensor,
        active: str | None = None,
        invariance: float = 0.0,
        eps: torch.Tensor | None = None,
        pairs: bool = False,
        clamp_grad: str = "replace",
        clamp_to: str = "mean",
        own_recon: bool = False,
        partner: torch.Tensor | None = None,
    ) -> Output:
        """Encode, sample (training) or take the mean (eval), clamp, decode.

        ``active``: the batch's active group (None trains an ordinary VAE); the others are clamped to
        their batch mean and pulled together with gradient ``invariance / N * (z - mean)`` (the gradient
        of ``invariance * 1/2 ||z - mean||^2`` per image in a batch-averaged loss); ``clamp_grad``
        ``replace`` discards their reconstruction gradient (the paper), ``mean`` keeps the batch
        mean's; ``clamp_to`` ``first`` clamps to the first image's code (the released code) instead of
        the mean. ``own_recon`` also decodes every image's own posterior mean, unclamped and detached
        from the encoder (``Output.own_logits``). ``partner`` (N,) names, for each image, the image of
        the batch it is edited from: every image with a partner other than itself is also decoded from
        the code re-rendering makes — its own active group, the partner's other groups, both posterior
        means with their gradient — into ``Output.edit_logits`` (rows ``Output.edit_rows``).
        ``eps``: (N, D) noise; drawn when None. ``pairs``: images ``i`` and ``i + N/2`` are a pair whose
        posteriors are averaged over the latents they are inferred to share before sampling (Ada-GVAE);
        ``mu``, ``logvar`` are then the averaged ones.
        """
        mu, logvar = self.encode(x)  # (N, D) each
        if pairs:
            mu, logvar = ada_gvae_posteriors(mu, logvar)
        if self.training:
            eps = torch.randn_like(mu) if eps is None else eps.to(mu)
            z = mu + eps * torch.exp(0.5 * logvar)  # (N, D) reparameterised sample
        else:
            z = mu
        # Clamp the sample the decoder sees (as the paper clamps the decoder's code), not mu.
        if active is None:
            return Output(self.decoder(z), mu, logvar, z)
        mask = self.clamp_mask(active)
        z_dec = clamp_to_batch_mean(z, mask, invariance / z.shape[0], clamp_grad == "mean", clamp_to)
        # One decoder pass over every code: the clamped (N), the own (N) and the edited (M) codes. The
        # own and edited codes are means, the codes evaluation and editing decode: a sample's noise hid the face (c17).
        codes = [z_dec] + ([mu.detach()] if own_recon else [])
        rows = None
        if partner is not None:
            rows = torch.nonzero(partner != torch.arange(len(partner), device=partner.device)).squeeze(1)  # (M,)
            codes.append(self.edit_code(mu, active, partner)[rows])  # (M, D)
        logits = self.decoder(torch.cat(codes) if len(codes) > 1 else z_dec)
        n = z.shape[0]
        own_logits = logits[n : 2 * n] if own_recon else None
        edit_logits = logits[2 * n if own_recon else n :] if rows is not None else None
        return Output(logits[:n], mu, logvar, z, own_logits, edit_logits, rows)


def reconstruction_nll(cfg: ModelConfig, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of images ``x`` (N, C, R, R) under decoder ``logits``, summed over pixels, batch mean."""
    logits = logits.float()
    if cfg.recon == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:  # gaussian with fixed sigma, constant dropped
        nll = (torch.sigmoid(logits) - x).pow(2) / (2 * cfg.gaussian_std**2)
    return nll.flatten(1).sum(1).mean()


def loss_terms(
    model: DCIGN, out: Output, x: torch.Tensor, active: str | None, kl_clamped: bool = True
) -> dict[str, torch.Tensor]:
    """Per-image reconstruction NLL, KL to N(0, I) and (unweighted) invariance penalty, averaged over the batch,
    and ``own_recon``, the NLL of the images decoded from their own codes, and ``edit_recon``, that of the
    images decoded from their partner's code (0 when no image has one), when the forward pass made them.

    ``kl_clamped=False`` leaves the clamped latents of a sweep batch out of the KL, as the
    released code zeroed their whole gradient: within such a batch only the active group
    pays for its information.
    """
    recon = reconstruction_nll(model.config, out.logits, x)
    kl_each = 0.5 * (out.mu.pow(2) + out.logvar.exp() - 1 - out.logvar)  # (N, D)
    if active is not None and not kl_clamped:
        kl_each = kl_each * (~model.clamp_mask(active)).to(kl_each.dtype)
    kl = kl_each.sum(1).mean()
    with torch.no_grad():
        if active is None:
            inv = torch.zeros((), device=x.device)
        else:
            inv = invariance_penalty(out.z, model.clamp_mask(active))
    terms = {"recon": recon, "kl": kl, "invariance": inv}
    if out.own_logits is not None:
        terms["own_recon"] = reconstruction_nll(model.config, out.own_logits, x)
    if out.edit_logits is not None:
        rows = out.edit_rows
        terms["edit_recon"] = (
            reconstruction_nll(model.config, out.edit_logits, x[rows]) if len(rows) else out.logits.new_zeros(())
        )
    return terms
