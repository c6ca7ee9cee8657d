"""Active latents and KL divergence per latent of a Gaussian encoder.

With posteriors ``q(z_j | x_n) = N(mu_nj, exp(logvar_nj))`` and the prior ``N(0, 1)``:

* KL per latent (nats): ``KL_j = mean_n 0.5 * (mu_nj^2 + exp(logvar_nj) - logvar_nj - 1)``, the
  latent's share of the KL term of the ELBO; 0 for a latent whose posterior is the prior.
* Active by posterior width (``n_active``): ``mean_n exp(logvar_nj) < var_threshold``; a posterior
  clearly narrower than the unit prior means the encoder pins the latent down, i.e. it carries
  information about the image.
* Active units (``n_active_au``; Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
  Autoencoders", ICLR, Sec. 5.2): ``Var_n(mu_nj) > au_threshold`` (0.01 in the paper); the
  posterior mean moves with the image. Variances use ``ddof=0``.

A collapsed latent (posterior = prior for every image) is inactive under both criteria; a latent
can be narrow yet inactive as a unit if its mean is constant (and vice versa), which is why both
are reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .utils import as_2d

__all__ = ["active_latents", "kl_per_latent"]


def _check(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, logvar = as_2d(mu, "mu"), as_2d(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {mu.shape} and logvar {logvar.shape} must have the same shape")
    if mu.shape[0] == 0:
        raise ValueError("no images")
    return mu, logvar


def kl_per_latent(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """``(D,)`` mean over images of ``KL(N(mu, exp(logvar)) || N(0, 1))`` per latent, in nats.

    ``mu``, ``logvar``: ``(N, D)`` posterior means and log-variances.
    """
    mu, logvar = _check(mu, logvar)
    return np.mean(0.5 * (mu**2 + np.exp(logvar) - logvar - 1.0), axis=0)


def active_latents(
    mu: np.ndarray,
    logvar: np.ndarray,
    groups: Mapping[str, slice],
    var_threshold: float = 0.5,
    au_threshold: float = 0.01,
) -> dict:
    """Counts of active latents per group and in total (see the module docstring).

    Args:
      mu, logvar: ``(N, D)`` posterior means and log-variances.
      groups: group name -> slice of latent columns, e.g. ``{"z_azimuth": slice(0, 1), ...}``.
      var_threshold: a latent is active when its mean posterior variance is below this.
      au_threshold: a latent is an active unit when the variance of its mean over images exceeds this.

    Returns:
      ``{"per_group": {name: {"n_latents": int, "n_active": int, "n_active_au": int, "kl": float (sum over the
      group's latents, nats)}}, "n_latents": int, "n_active": int, "n_active_au": int (totals over all D latents,
      grouped or not), "kl_total": float, "kl_per_latent": list[float] (D), "posterior_var_per_latent":
      list[float] (D), "mean_var_per_latent": list[float] (D)}``.
    """
    mu, logvar = _check(mu, logvar)
    kl = kl_per_latent(mu, logvar)
    post_var = np.exp(logvar).mean(axis=0)  # (D,)
    mean_var = mu.var(axis=0)  # (D,)
    active = post_var < var_threshold
    active_au = mean_var > au_threshold
    per_group = {}
    for name, sl in groups.items():
        cols = np.arange(mu.shape[1])[sl]
        per_group[name] = {
            "n_latents": int(cols.size),
            "n_active": int(np.count_nonzero(active[cols])),
            "n_active_au": int(np.count_nonzero(active_au[cols])),
            "kl": float(kl[cols].sum()),
        }
    return {
        "per_group": per_group,
        "n_latents": int(mu.shape[1]),
        "n_active": int(np.count_nonzero(active)),
        "n_active_au": int(np.count_nonzero(active_au)),
        "kl_total": float(kl.sum()),
        "kl_per_latent": [float(x) for x in kl],
        "posterior_var_per_latent": [float(x) for x in post_var],
        "mean_var_per_latent": [float(x) for x in mean_var],
    }
