"""Calibration between a factor's latents and its angle, fitted on the held-out test sweeps.

A model's code for a factor (the DC-IGN's group, or a baseline's best single latent) is
related to the true angle only through training, so every use of "the code for 30 degrees"
or "the angle this code means" needs a calibration. It is fitted on the test sweep batches
of that factor (the factor sweeps over its whole range while the others stay fixed) and
never on the images that are later scored with it (the factor grid, the recognition set).

- Forward (angle -> code), used to edit a latent to a target angle: Gaussian-kernel
  (Nadaraya-Watson) regression of each latent on the angle, tabulated at ``n_points``
  evenly spaced angles over the observed range; codes between table angles are linearly
  interpolated. The bandwidth is ``bandwidth`` x the range.
- Inverse (code -> angle), used to read an angle off a code: isotonic (monotone) regression
  of the angle on the factor's first latent, increasing or decreasing as the data's rank
  correlation says, tabulated at its breakpoints.

A calibration file (``eval/calibration/<model>.npz``, written by ``dcign-evaluate``) holds per
factor ``<f>_latents`` (int indices into the code), ``<f>_angles`` and ``<f>_codes`` (the
forward table), ``<f>_inverse_code`` and ``<f>_inverse_angle`` (the inverse table).
:func:`default_calibration` finds the file of a checkpoint; :func:`read_angles` reads a whole
code's angles through it (``dcign-rerender``, ``dcign-fit`` and the explorer use both).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.vocabulary import FACTORS


class CalibrationError(ValueError):
    """A calibration file or request that cannot be used (the message names it)."""


@dataclass(frozen=True)
class FactorCalibration:
    latents: np.ndarray  # (d,) int indices of the factor's latents in the code
    angles: np.ndarray  # (n,) ascending table angles, degrees
    codes: np.ndarray  # (n, d) code at each table angle
    inverse_code: np.ndarray  # (m,) ascending values of the first latent
    inverse_angle: np.ndarray  # (m,) angle at each of them (monotone)

    @property
    def range(self) -> tuple[float, float]:
        return float(self.angles[0]), float(self.angles[-1])

    def code(self, angle) -> np.ndarray:
        """(d,) code for one angle, or (k, d) for k angles (linear between table angles)."""
        a = np.asarray(angle, dtype=np.float64)
        out = np.stack([np.interp(a, self.angles, self.codes[:, j]) for j in range(self.codes.shape[1])], axis=-1)
        return out

    def angle(self, first_latent) -> np.ndarray:
        """Angle(s) that the factor's first latent value(s) stand for (clamped to the calibrated range)."""
        return np.interp(np.asarray(first_latent, dtype=np.float64), self.inverse_code, self.inverse_angle)


Calibration = dict[str, FactorCalibration]


def _kernel_table(codes: np.ndarray, angles: np.ndarray, n_points: int, bandwidth: float, span) -> tuple:
    lo, hi = (float(angles.min()), float(angles.max())) if span is None else (float(span[0]), float(span[1]))
    grid = np.linspace(lo, hi, n_points) if hi > lo else np.array([lo])
    h = max(bandwidth * (hi - lo), 1e-6)
    w = np.exp(-0.5 * ((grid[:, None] - angles[None, :]) / h) ** 2)  # (n_points, N)
    w /= w.sum(axis=1, keepdims=True)
    return grid, w @ codes  # (n,), (n, d)


def _isotonic_table(latent: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import spearmanr
    from sklearn.isotonic import IsotonicRegression

    rho = spearmanr(latent, angles).statistic if np.ptp(latent) > 0 else 1.0
    iso = IsotonicRegression(increasing=bool(np.nan_to_num(rho, nan=1.0) >= 0), out_of_bounds="clip")
    iso.fit(latent, angles)
    x = np.asarray(iso.X_thresholds_, dtype=np.float64)
    y = np.asarray(iso.y_thresholds_, dtype=np.float64)
    if x.size == 1:  # a constant latent: every code means the mean angle
        x, y = np.array([x[0] - 1.0, x[0] + 1.0]), np.array([y[0], y[0]])
    return x, y


def fit_factor(
    codes: np.ndarray,
    angles: np.ndarray,
    latents,
    n_points: int = 61,
    bandwidth: float = 0.05,
    span: tuple[float, float] | None = None,
) -> FactorCalibration:
    """Calibrate one factor from (N, D) codes of its sweep images and their (N,) true angles.

    ``span``: the angles the forward table covers (default: the observed ones); the factor's
    rendered range, whose ends stratified sweeps approach but rarely hit.
    """
    codes = np.asarray(codes, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64).ravel()
    latents = np.atleast_1d(np.asarray(latents, dtype=np.int64))
    if codes.ndim != 2 or codes.shape[0] != angles.size or angles.size < 2:
        raise CalibrationError(f"need (N, D) codes and N >= 2 angles, got {codes.shape} and {angles.shape}")
    sub = codes[:, latents]
    ok = np.isfinite(sub).all(axis=1) & np.isfinite(angles)
    if ok.sum() < 2:
        raise CalibrationError("fewer than two finite (code, angle) pairs to calibrate from")
    grid, table = _kernel_table(sub[ok], angles[ok], n_points, bandwidth, span)
    inv_x, inv_y = _isotonic_table(sub[ok, 0], angles[ok])
    return FactorCalibration(latents, grid, table, inv_x, inv_y)


def fit(
    sweeps: dict[str, tuple[np.ndarray, np.ndarray]],
    latents: dict[str, list[int]],
    spans: dict[str, tuple[float, float]] | None = None,
    **kw,
) -> Calibration:
    """Calibrate every factor: ``sweeps[f] = (codes (N, D), angles (N,))`` of factor f's sweep images."""
    spans = spans or {}
    return {
        f: fit_factor(*sweeps[f], latents[f], span=spans.get(f), **kw)
        for f in FACTORS
        if f in sweeps and len(latents.get(f, ()))
    }


def save(path: str | Path, calibration: Calibration) -> None:
    """Write a calibration as an uncompressed .npz (no pickles); the caller makes the write atomic."""
    arrays = {}
    for f, c in calibration.items():
        arrays |= {
            f"{f}_latents": c.latents,
            f"{f}_angles": c.angles,
            f"{f}_codes": c.codes,
            f"{f}_inverse_code": c.inverse_code,
            f"{f}_inverse_angle": c.inverse_angle,
        }
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load(path: str | Path, latent_dim: int | None = None) -> Calibration:
    """Read a calibration file; check shapes, finiteness and (if given) the model's latent count."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a named pipe that would block the read
        raise CalibrationError(f"{path}: not a regular file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CalibrationError(f"{path}: unreadable calibration file ({type(e).__name__}: {e})") from None
    out: Calibration = {}
    for f in FACTORS:
        keys = [f"{f}_{k}" for k in ("latents", "angles", "codes", "inverse_code", "inverse_angle")]
        if not any(k in arrays for k in keys):
            continue
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise CalibrationError(f"{path}: {f} calibration is incomplete (missing {', '.join(missing)})")
        lat, ang, cod, ix, iy = (arrays[k] for k in keys)
        if lat.ndim != 1 or not np.issubdtype(lat.dtype, np.integer) or lat.size == 0:
            raise CalibrationError(f"{path}: {f}_latents must be a non-empty integer vector")
        if latent_dim is not None and (lat.min() < 0 or lat.max() >= latent_dim):
            raise CalibrationError(
                f"{path}: {f}_latents index outside the model's {latent_dim} latents (calibration of another model?)"
            )
        if not all(a.dtype.kind in "iuf" for a in (ang, cod, ix, iy)):
            raise CalibrationError(f"{path}: {f} calibration tables must hold real numbers")
        if ang.ndim != 1 or cod.shape != (ang.size, lat.size) or ix.shape != iy.shape or ix.ndim != 1:
            raise CalibrationError(f"{path}: {f} calibration tables have inconsistent shapes")
        if not all(np.isfinite(a).all() for a in (ang, cod, ix, iy)) or np.any(np.diff(ang) < 0):
            raise CalibrationError(f"{path}: {f} calibration tables must be finite with ascending angles")
        out[f] = FactorCalibration(lat.astype(np.int64), ang, cod, ix, iy)
    if not out:
        raise CalibrationError(f"{path}: not a calibration file (no factor tables)")
    return out


def default_calibration(checkpoint: Path) -> Path | None:
    """``eval/calibration/<model dir name>.npz`` in the nearest ancestor of the checkpoint that has one.

    ``models/dcign`` -> ``eval/calibration/dcign.npz``, as the DVC evaluate stage writes it.
    """
    ckpt = checkpoint.resolve()
    model_dir = ckpt if ckpt.is_dir() else ckpt.parent
    name = f"{model_dir.name}.npz"
    for root in model_dir.parents:
        candidate = root / "eval" / "calibration" / name
        if candidate.is_file():
            return candidate
    return None


def read_angles(calibration: Calibration, mu: np.ndarray, default: dict | None = None) -> dict[str, float]:
    """Angles (degrees) that a code's factor latents stand for, through the inverse calibration tables.

    A factor without a calibration takes ``default[factor]`` (0 when not given).
    """
    mu = np.asarray(mu, dtype=np.float64).ravel()
    out = {}
    for f in FACTORS:
        if f in calibration:
            c = calibration[f]
            out[f] = float(c.angle(mu[c.latents[0]]))
        else:
            out[f] = float((default or {}).get(f, 0.0))
    return out
