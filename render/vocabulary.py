"""The words every stage shares: sweep types, scene factors, latent groups, the grey conversion.

Rendering writes them into the shards, training maps sweeps to latent groups, evaluation
scores factors; each stage imports them from here so that they are defined once.
"""

from __future__ import annotations

import numpy as np

# The scene variables a batch can sweep, in the order of the shards' factor arrays.
FACTORS = ("azimuth", "elevation", "light")
# Training sweeps: one factor, or the face (shape, texture, or both: the paper's "intrinsic").
SWEEPS = ("azimuth", "elevation", "light", "shape", "texture", "intrinsic")
# The evaluation grid (identities x azimuths x elevations x lights) is stored as a
# pseudo-sweep: batch b holds every azimuth for one (identity, elevation, light).
GRID = "grid"
# The recognition set: batch b holds one identity at evenly spaced azimuths over the whole
# range, with elevation and light drawn per image (invariant recognition across pose).
RECOGNITION = "recognition"
ALL_SWEEPS = (*SWEEPS, GRID, RECOGNITION)
# Pseudo-sweeps whose sizes come from the evaluate section of params.yaml.
EVAL_SWEEPS = (GRID, RECOGNITION)

# What each training sweep varies: its factor, or the face (identity).
SWEEP_FACTOR = {
    "azimuth": "azimuth",
    "elevation": "elevation",
    "light": "light",
    "shape": "identity",
    "texture": "identity",
    "intrinsic": "identity",
}
# The latent group a sweep makes active: its factor's group, or the intrinsic group for a new face.
SWEEP_GROUP = {s: "intrinsic" if f == "identity" else f for s, f in SWEEP_FACTOR.items()}

# Grey images use the paper's conversion of the RGB renders: 0.21 R + 0.72 G + 0.07 B.
GREY_WEIGHTS = np.array([0.21, 0.72, 0.07], dtype=np.float32)
