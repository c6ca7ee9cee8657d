"""Basel Face Model 2017 (``.h5``).

``shape/model/{mean,pcaBasis,pcaVariance}``, ``shape/representer/cells``, ``color/model/...``
(sRGB colours in [0, 1], or 0-255); the expression block is ignored. ``pcaBasis`` columns are
taken as directions and ``pcaVariance`` as variances (std = sqrt). Every basis column is
renormalised to unit length, so a file that stores the basis already scaled by the std is still
right. An HDF5 file holding a BFM 2009 model (MATLAB v7.3) is read as one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.faces import bfm2009
from render.faces.canonical import colour_scale, fail, pca_model
from render.faces.model import MorphableModel


def load(path: Path) -> MorphableModel:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise fail(path, f"not a readable HDF5 file ({e})") from None
    with f:
        if "shape" not in f and "shapeMU" in f:
            return bfm2009.load_v73(path)

        def get(key: str, required: bool = True):
            if key in f:
                return np.asarray(f[key])
            if required:
                raise fail(path, f"not a Basel Face Model 2017 file: missing {key}")
            return None

        mean = get("shape/model/mean")
        basis = get("shape/model/pcaBasis")
        var = get("shape/model/pcaVariance")
        cells = get("shape/representer/cells")
        cmean = get("color/model/mean", required=False)
        cbasis = get("color/model/pcaBasis", required=False)
        cvar = get("color/model/pcaVariance", required=False)
    for what, v in (("shape/model/pcaVariance", var), ("color/model/pcaVariance", cvar)):
        if v is not None and np.any(np.asarray(v) < 0):
            raise fail(path, f"{what} has negative variances")
    has_colour = cmean is not None and cbasis is not None and cvar is not None
    crange = colour_scale(cmean) if has_colour else 1.0
    return pca_model(
        path,
        mean,
        basis,
        np.sqrt(np.asarray(var, np.float64)),
        cells,
        cmean if has_colour else None,
        cbasis if has_colour else None,
        np.sqrt(np.asarray(cvar, np.float64)) if has_colour else None,
        colour_range=crange,
    )
