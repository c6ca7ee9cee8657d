"""Basel Face Model 2009 (``01_MorphableModel.mat``).

``shapeMU`` (3V x 1), ``shapePC`` (3V x K, unit columns), ``shapeEV`` (K, standard deviations),
``texMU``/``texPC``/``texEV`` (sRGB colours, 0-255), ``tl`` (F x 3, 1-based, wound inwards).
MATLAB v7.3 files (HDF5) are read with h5py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.faces.canonical import colour_scale, fail, pca_model
from render.faces.model import MorphableModel


def load(path: Path) -> MorphableModel:
    try:
        import scipy.io

        data = scipy.io.loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        return load_v73(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise fail(path, f"not a readable MATLAB file ({e})") from None
    return _from_arrays(path, data)


def load_v73(path: Path) -> MorphableModel:
    import h5py

    with h5py.File(path, "r") as f:
        # MATLAB stores arrays transposed (column-major) in HDF5.
        data = {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    return _from_arrays(path, data)


def _from_arrays(path: Path, data: dict) -> MorphableModel:
    missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "tl") if k not in data]
    if missing:
        raise fail(path, f"not a Basel Face Model 2009 file: missing {', '.join(missing)}")
    has_tex = all(k in data for k in ("texMU", "texPC", "texEV"))
    tex_range = colour_scale(data["texMU"]) if has_tex else 1.0
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
    )
