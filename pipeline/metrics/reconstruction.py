"""Image reconstruction quality: MSE, PSNR and SSIM for float images in ``[0, 1]``.

* MSE: mean squared error over all pixels, channels and images.
* PSNR: ``10 log10(data_range**2 / MSE)`` dB with ``data_range = 1``. For a batch this is the PSNR
  of the pooled MSE of the whole batch (not the mean of per-image PSNRs). Identical inputs
  (``MSE == 0``) give ``float("inf")``, as ``skimage.metrics.peak_signal_noise_ratio`` does
  (``json.dump`` writes it as ``Infinity``).
* SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error Visibility to
  Structural Similarity", IEEE TIP): local means, variances and covariance from an isotropic
  Gaussian window of standard deviation 1.5 truncated to 11 x 11 (``scipy.ndimage.gaussian_filter``
  with ``truncate=3.5``), ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with ``L = data_range``,

      SSIM = ((2 mu_x mu_y + C1)(2 sigma_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),

  population (not sample-corrected) moments as in the paper, ``reflect`` padding, and the SSIM map is
  averaged after cropping the 5-pixel border that the window touches (as scikit-image does). Colour
  channels are treated independently and averaged. Images are ``(..., H, W)`` by default (e.g. NCHW
  or CHW); pass ``spatial_axes=(-3, -2)`` for channel-last (``HWC``/``NHWC``) arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mse", "psnr", "reconstruction_metrics", "ssim"]


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return a, b


def mse(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over all elements."""
    a, b = _pair(x, y)
    return float(np.mean((a - b) ** 2))


def _psnr_from_mse(m: float, data_range: float) -> float:
    if m == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / m))


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of the pooled MSE; ``inf`` for identical inputs."""
    return _psnr_from_mse(mse(x, y), data_range)


def reconstruction_metrics(x: np.ndarray, x_hat: np.ndarray, data_range: float = 1.0) -> dict:
    """``{"mse": float, "psnr": float}`` of a reconstruction ``x_hat`` of images ``x`` (any matching shapes)."""
    m = mse(x, x_hat)
    return {"mse": m, "psnr": _psnr_from_mse(m, data_range)}


def ssim(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float = 1.0,
    spatial_axes: tuple[int, int] = (-2, -1),
    sigma: float = 1.5,
    truncate: float = 3.5,
) -> float:
    """Mean structural similarity (Gaussian-window SSIM of Wang et al. 2004) of two images or batches."""
    a, b = _pair(x, y)
    if a.ndim < 2:
        raise ValueError("images must have at least two (spatial) dimensions")
    axes = tuple(ax % a.ndim for ax in spatial_axes)
    sigmas = [sigma if ax in axes else 0.0 for ax in range(a.ndim)]

    def blur(img: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(img, sigma=sigmas, truncate=truncate, mode="reflect")

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    smap = num / den
    pad = int(truncate * sigma + 0.5)
    crop = [slice(None)] * a.ndim
    for ax in axes:
        if a.shape[ax] > 2 * pad:
            crop[ax] = slice(pad, a.shape[ax] - pad)
    return float(np.mean(smap[tuple(crop)]))
