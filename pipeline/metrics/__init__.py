"""Disentanglement, recognition and reconstruction metrics for dcign (numpy, scipy and scikit-learn).

One module per metric, each a pure function of the codes (or images) and ground-truth factors
returning a dict of floats (plus per-factor lists); the recognition and identity-preservation
functions also return per-item arrays for cluster-bootstrap intervals. Every function that samples
or fits a randomised model takes an explicit ``seed``.
"""

from .active_units import active_latents, kl_per_latent
from .beta_vae import beta_vae_score
from .bootstrap import bootstrap_mean, cluster_bootstrap, half_sample_interval
from .correlation import best_single_latent, latent_factor_correlation
from .dci import dci, dci_from_importance, dci_linear
from .factor_vae import factor_vae_score
from .identity_preservation import identity_preservation
from .invariance import invariance_ratio
from .mig import mig
from .mig_continuous import mig_continuous
from .recognition import (
    accuracy_at,
    best_threshold,
    class_balanced,
    identification,
    pair_scores,
    roc_auc,
    similarity,
    standardisation,
    verification_pairs,
)
from .reconstruction import mse, psnr, reconstruction_metrics, ssim
from .sap import sap
from .utils import discrete_entropy, discrete_mutual_info, discretize, discretize_factors

__all__ = [
    "accuracy_at",
    "active_latents",
    "best_single_latent",
    "best_threshold",
    "beta_vae_score",
    "bootstrap_mean",
    "class_balanced",
    "cluster_bootstrap",
    "dci",
    "dci_from_importance",
    "dci_linear",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "discretize_factors",
    "factor_vae_score",
    "half_sample_interval",
    "identification",
    "identity_preservation",
    "invariance_ratio",
    "kl_per_latent",
    "latent_factor_correlation",
    "mig",
    "mig_continuous",
    "mse",
    "pair_scores",
    "psnr",
    "reconstruction_metrics",
    "roc_auc",
    "sap",
    "similarity",
    "ssim",
    "standardisation",
    "verification_pairs",
]
