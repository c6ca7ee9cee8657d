"""Basel Face Model 2009 (``01_MorphableModel.mat``).

``shapeMU`` (3V x 1), ``shapePC`` (3V x K, unit columns), ``shapeEV`` (K, standard deviations),
``texMU``/``texPC``/``texEV`` (sRGB colours, 0-255), ``tl`` (F x 3, 1-based, wound inwards).
MATLAB v7.3 files (HDF5) are read with h5py. Both readers run in a child process (:mod:`.isolated`,
called by :mod:`.basel`).
"""

from __future__ import annotations

from pathlib import Path

from render.faces.canonical import check_complete, colour_scale, fail, pca_model, real_array
from render.faces.model import MorphableModel

NAMES = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV")
COLOUR = ("texMU", "texPC", "texEV")


def from_arrays(path: Path, data: dict) -> MorphableModel:
    """A BFM 2009 model from its arrays, keyed by their MATLAB names."""
    missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "tl") if k not in data]
    if missing:
        raise fail(path, f"not a Basel Face Model 2009 file: missing {', '.join(missing)}")
    has_tex = check_complete(path, data, COLOUR)
    tex_range = colour_scale(real_array(path, "texMU", data["texMU"])) if has_tex else 1.0
    return pca_model(
        path,
        data["shapeMU"],
        data["shapePC"],
        data["shapeEV"],
        data["tl"],
        data["texMU"] if has_tex else None,
        data["texPC"] if has_tex else None,
        data["texEV"] if has_tex else None,
        colour_range=tex_range,
        one_based=True,
        names=NAMES,
    )
