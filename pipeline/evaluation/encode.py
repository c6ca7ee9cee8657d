"""Run a trained model over uint8 images: latent means/log-variances and reconstructions.

Both run in fp32 with channels-last convolutions (the same arithmetic as the default layout,
about twice as fast on CPU for the 7x7 decoder convolutions).
"""

from __future__ import annotations

import numpy as np
import torch


def _ready(model) -> torch.device:
    model.eval()
    model.to(memory_format=torch.channels_last)  # idempotent
    return next(model.parameters()).device


def _as_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = (x.float() / 255.0).unsqueeze(1)  # (N, 1, R, R) in [0, 1]
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def encode(model, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N, R, R) uint8 -> latent means and log-variances, each (N, D) float32."""
    device = _ready(model)
    mus, logvars = [], []
    for i in range(0, len(images), batch):
        mu, logvar = model.encode(_as_input(images[i : i + batch], device))
        mus.append(mu.float().cpu().numpy())
        logvars.append(logvar.float().cpu().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


@torch.no_grad()
def decode(model, codes: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, D) codes -> (N, R, R) float32 images in [0, 1]."""
    device = _ready(model)
    out = []
    for i in range(0, len(codes), batch):
        z = torch.from_numpy(np.ascontiguousarray(codes[i : i + batch], dtype=np.float32)).to(device)
        out.append(model.decode(z).float().cpu().numpy()[:, 0])
    return np.concatenate(out)
