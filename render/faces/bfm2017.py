"""Basel Face Model 2017 (``.h5``).

``shape/model/{mean,pcaBasis,pcaVariance}``, ``shape/representer/cells``, ``color/model/...``
(sRGB colours in [0, 1], or 0-255); the expression block is ignored. ``pcaBasis`` columns are
taken as directions and ``pcaVariance`` as variances (std = sqrt). Every basis column is
renormalised to unit length, so a file that stores the basis already scaled by the std is still
right. An HDF5 file holding a BFM 2009 model (MATLAB v7.3) is read as one. The file is read in a
child process (:mod:`.isolated`, called by :mod:`.basel`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.faces.canonical import check_complete, colour_scale, fail, pca_model, real_array
from render.faces.model import MorphableModel

NAMES = tuple(f"{part}/model/{k}" for part in ("shape", "color") for k in ("mean", "pcaBasis", "pcaVariance"))
COLOUR = NAMES[3:]


def from_arrays(path: Path, data: dict) -> MorphableModel:
    """A BFM 2017 model from its arrays, keyed by their HDF5 paths."""
    missing = [k for k in ("shape/model/mean", "shape/model/pcaBasis", "shape/model/pcaVariance") if k not in data]
    missing += [k for k in ("shape/representer/cells",) if k not in data]
    if missing:
        raise fail(path, f"not a Basel Face Model 2017 file: missing {', '.join(missing)}")
    var = real_array(path, "shape/model/pcaVariance", data["shape/model/pcaVariance"])
    has_colour = check_complete(path, data, COLOUR)
    cmean, cbasis, cvar = (data[k] for k in COLOUR) if has_colour else (None, None, None)
    if has_colour:
        cmean = real_array(path, "color/model/mean", cmean)
        cvar = real_array(path, "color/model/pcaVariance", cvar)
    for what, v in (("shape/model/pcaVariance", var), ("color/model/pcaVariance", cvar)):
        if v is not None and np.any(v < 0):
            raise fail(path, f"{what} has negative variances")
    return pca_model(
        path,
        data["shape/model/mean"],
        data["shape/model/pcaBasis"],
        np.sqrt(var),
        data["shape/representer/cells"],
        cmean,
        cbasis,
        np.sqrt(cvar) if has_colour else None,
        colour_range=colour_scale(cmean) if has_colour else 1.0,
        names=NAMES,
    )
