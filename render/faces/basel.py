"""Basel Face Model files: each read in a child process, then built by the layout found in it.

A ``.mat`` file usually holds the 2009 model (:mod:`.bfm2009`) and an ``.h5`` file the 2017 one
(:mod:`.bfm2017`), but either container can hold either layout (a MATLAB v7.3 file is HDF5).
:func:`render.faces.isolated.read_arrays` reads the arrays in a child process, where a corrupt
file can crash only the child, and names the layout it found; that layout's module builds the model.
"""

from __future__ import annotations

from pathlib import Path

from render.faces import bfm2009, bfm2017
from render.faces.model import MorphableModel

_BUILDERS = {"bfm2009": bfm2009.from_arrays, "bfm2017": bfm2017.from_arrays}


def load_mat(path: Path) -> MorphableModel:
    """A ``.mat`` file (scipy's MATLAB reader can crash on a corrupt file): BFM 2009 unless it holds 2017's layout."""
    return _load(path, "mat", "bfm2009")


def load_h5(path: Path) -> MorphableModel:
    """An HDF5 file (C code that a corrupt file can crash): BFM 2017 unless it holds 2009's layout."""
    return _load(path, "h5", "bfm2017")


def _load(path: Path, container: str, usual: str) -> MorphableModel:
    from render.faces import isolated

    data = isolated.read_arrays(container, path)
    layout = str(data.pop(isolated.LAYOUT))
    return _BUILDERS.get(layout, _BUILDERS[usual])(path, data)
