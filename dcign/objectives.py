"""The regularisers of the baseline methods, as small pure functions of codes and posteriors.

Every method shares the network of :mod:`dcign.model` and its reconstruction term; they differ
in what they add to it (:func:`regulariser`):

- ``dcign``, ``vae``: ``kl_weight * KL(q(z|x) || N(0, I))`` (the DC-IGN adds its clamp in the forward pass);
- ``beta_vae``: ``beta * KL`` (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
  Constrained Variational Framework", ICLR);
- ``beta_tcvae``: the KL split into index-code mutual information, total correlation and
  dimension-wise KL, weighted ``alpha``, ``beta``, ``gamma``, each estimated with minibatch-weighted
  sampling (Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in VAEs", NeurIPS);
- ``factor_vae``: ``kl_weight * KL + gamma * TC``, the total correlation estimated by a discriminator
  between codes and codes permuted per dimension (Kim & Mnih 2018, "Disentangling by Factorising", ICML);
- ``ada_gvae``: ``kl_weight * KL`` of posteriors averaged over the latents a pair of images is
  inferred to share (Locatello et al. 2020, "Weakly-Supervised Disentanglement Without
  Compromises", ICML); the averaging happens in the forward pass (:func:`ada_gvae_posteriors`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dcign.config import TrainConfig

LOG_2PI = math.log(2 * math.pi)

# FactorVAE's discriminator optimizer: Adam with these betas (Kim & Mnih 2018, appendix A).
DISCRIMINATOR_BETAS = (0.5, 0.9)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of every latent, (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) elementwise (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def tc_decomposition(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int
) -> dict[str, torch.Tensor]:
    """β-TCVAE's three KL terms, averaged over the batch, by minibatch-weighted sampling (Chen et al. 2018, eq. 2-3).

    ``z``: (M, D) one sample of each image's posterior N(mu, exp(logvar)); ``dataset_size``: N, the
    images the minibatch is drawn from. With ``log q(z_i|x_j)`` the posterior of image j at sample i,

        log q(z_i)        ~ logsumexp_j log q(z_i | x_j) - log(N M)
        log prod_d q(z_id) ~ sum_d [logsumexp_j log q(z_id | x_j) - log(N M)]

    and ``mi = E[log q(z|x) - log q(z)]``, ``tc = E[log q(z) - log prod_d q(z_d)]``,
    ``dwkl = E[log prod_d q(z_d) - log p(z)]``. The three telescope: their sum is
    ``E[log q(z|x) - log p(z)]``, the one-sample estimate of KL(q(z|x) || p(z)).
    """
    m = z.shape[0]
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)  # (M,) log q(z_i | x_i)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)  # (M,)
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (M, M, D): [i, j, d]
    log_nm = math.log(dataset_size * m)
    log_qz = torch.logsumexp(pairwise.sum(2), dim=1) - log_nm  # (M,)
    log_prod_qzd = (torch.logsumexp(pairwise, dim=1) - log_nm).sum(1)  # (M,)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzd).mean(),
        "dwkl": (log_prod_qzd - log_pz).mean(),
    }


class Discriminator(nn.Module):
    """FactorVAE's discriminator: an MLP from a code to two logits (code of q(z), code of prod_d q(z_d)).

    Kim & Mnih 2018, appendix A: 6 layers of 1000 units with LeakyReLU(0.2) and 2 outputs.
    """

    def __init__(self, latent: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        mods: list[nn.Module] = []
        width = latent
        for _ in range(layers - 1):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.net = nn.Sequential(*mods, nn.Linear(width, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (N, 2) logits


def permute_dims(z: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Each column of ``z`` (N, D) shuffled across the batch by its own permutation ``perm[:, d]`` (N, D).

    Kim & Mnih 2018, algorithm 1: samples of prod_d q(z_d), each column's values kept, their pairing broken.
    """
    return torch.gather(z, 0, perm)


def factor_tc(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The discriminator's estimate of TC(q(z)): mean of log D(z) / (1 - D(z)) = logit_0 - logit_1.

    Differentiable in ``z`` only: the discriminator's weights enter as constants, so this term
    trains the encoder and never the discriminator (which :func:`discriminator_loss` trains).
    """
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    logits = torch.func.functional_call(discriminator, frozen, (z,))
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(discriminator: nn.Module, z: torch.Tensor, z_perm: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the discriminator telling codes (class 0) from permuted codes (class 1), halved per class."""
    zeros = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    ones = torch.ones(z_perm.shape[0], dtype=torch.long, device=z.device)
    return 0.5 * (F.cross_entropy(discriminator(z), zeros) + F.cross_entropy(discriminator(z_perm), ones))


def pair_kl(mu1, logvar1, mu2, logvar2) -> torch.Tensor:
    """KL(N(mu1, var1) || N(mu2, var2)) per latent, (P, D)."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2).pow(2)) / logvar2.exp() - 1)


def shared_mask(kl: torch.Tensor) -> torch.Tensor:
    """Ada-GVAE's guess of the shared latents of each pair (Locatello et al. 2020, eq. 4): (P, D) bool.

    A latent is shared when its pair KL is below the threshold ``(max_d + min_d) / 2`` of its pair.
    """
    tau = 0.5 * (kl.max(dim=1, keepdim=True).values + kl.min(dim=1, keepdim=True).values)  # (P, 1)
    return kl < tau


def ada_gvae_posteriors(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors of pairs ``(i, i + P)`` of a batch of 2P images, averaged over their shared latents.

    Ada-GVAE's averaging (Locatello et al. 2020, sec. 4): on the latents :func:`shared_mask` picks, both
    images get mean ``(mu1 + mu2) / 2`` and variance ``(var1 + var2) / 2``; the others keep their own.
    """
    p = mu.shape[0] // 2
    mu1, mu2, lv1, lv2 = mu[:p], mu[p:], logvar[:p], logvar[p:]
    shared = shared_mask(pair_kl(mu1, lv1, mu2, lv2).detach())
    mu_avg = 0.5 * (mu1 + mu2)
    lv_avg = torch.log(0.5 * (lv1.exp() + lv2.exp()))
    mu_out = torch.cat([torch.where(shared, mu_avg, mu1), torch.where(shared, mu_avg, mu2)])
    lv_out = torch.cat([torch.where(shared, lv_avg, lv1), torch.where(shared, lv_avg, lv2)])
    return mu_out, lv_out


def regulariser(
    cfg: TrainConfig,
    kl: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    discriminator: nn.Module | None = None,
) -> torch.Tensor:
    """What the method adds to the reconstruction NLL (see the module doc); ``kl`` is the batch-mean KL."""
    if cfg.method == "beta_vae":
        return cfg.beta * kl
    if cfg.method == "beta_tcvae":
        t = tc_decomposition(z, mu, logvar, dataset_size)
        return cfg.tcvae_alpha * t["mi"] + cfg.tcvae_beta * t["tc"] + cfg.tcvae_gamma * t["dwkl"]
    if cfg.method == "factor_vae":
        return cfg.kl_weight * kl + cfg.factor_gamma * factor_tc(discriminator, z)
    return cfg.kl_weight * kl
