"""Disentanglement and reconstruction metrics for dcign (numpy/scipy only).

One module per metric, each a pure function of the codes and ground-truth factors returning a
dict of floats (plus per-factor lists); every function that samples takes an explicit ``seed``.
"""

from .beta_vae import beta_vae_score
from .correlation import best_single_latent, latent_factor_correlation
from .dci import dci
from .face_recognition import identification_accuracy
from .factor_vae import factor_vae_score
from .invariance import invariance_ratio
from .mig import mig
from .mig_continuous import mig_continuous
from .reconstruction import mse, psnr, reconstruction_metrics, ssim
from .sap import sap
from .utils import discrete_entropy, discrete_mutual_info, discretize, discretize_factors

__all__ = [
    "best_single_latent",
    "beta_vae_score",
    "dci",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "discretize_factors",
    "factor_vae_score",
    "identification_accuracy",
    "invariance_ratio",
    "latent_factor_correlation",
    "mig",
    "mig_continuous",
    "mse",
    "psnr",
    "reconstruction_metrics",
    "sap",
    "ssim",
]
