"""Read MATLAB and HDF5 face model files in a short-lived child process.

scipy's MATLAB v5 reader and the HDF5 library are C code: a corrupt file can crash them (a
segmentation fault kills the interpreter; no ``except`` catches it), and a header may declare
arrays far larger than memory. So these files are never parsed in the user's process.
:func:`read_arrays` runs ``python -m render.faces.isolated KIND PATH OUT`` with a timeout; the
child checks the sizes every header declares before reading anything, reads the arrays a face
model needs and writes them to an ``.npz`` without pickles, which the parent loads and checks
like any other file. A crash, a hang or a refusal in the child is one :class:`FaceModelError`
line in the parent. Starting the child costs about a second, once per model load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from render.faces.canonical import fail
from render.text import printable

TIMEOUT_S = 300  # the full BFM 2017 (0.5 GB) reads in seconds; a file that takes minutes is not a model
MAX_ELEMENTS = 1 << 28  # per array; the largest array of any BFM is 160,470 x 199 = 32 M elements
MAX_TOTAL_ELEMENTS = 1 << 29  # all arrays read together (4 GiB as float64)
REFUSED = 3  # the child's exit status when it found a problem it describes on stderr
# The arrays each layout needs; nothing else is read.
BFM2009_KEYS = ("shapeMU", "shapePC", "shapeEV", "tl", "texMU", "texPC", "texEV")
BFM2017_KEYS = (
    "shape/model/mean",
    "shape/model/pcaBasis",
    "shape/model/pcaVariance",
    "shape/representer/cells",
    "color/model/mean",
    "color/model/pcaBasis",
    "color/model/pcaVariance",
)
LAYOUT = "__layout__"  # the key of the returned array naming the layout: bfm2009 or bfm2017
KINDS = ("mat", "h5")
_NAMES = {"mat": "MATLAB", "h5": "HDF5"}


class Refused(Exception):
    """In the child: the file is not a model this reader accepts (the message says why)."""


def read_arrays(kind: str, path: Path) -> dict[str, np.ndarray]:
    """The raw arrays of a ``.mat`` or ``.h5`` face model, read in a child process (see the module doc).

    Returns the arrays by their name in the file and ``__layout__`` (``bfm2009`` or ``bfm2017``).
    Raises FaceModelError naming ``path`` when the child refuses the file, crashes or times out.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(path)
    root = str(Path(__file__).resolve().parents[2])  # the child imports this project from here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="dcign-model-") as tmp:
        out = Path(tmp) / "arrays.npz"
        command = [sys.executable, "-m", "render.faces.isolated", kind, str(path), str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise fail(path, f"reading took over {TIMEOUT_S} s; not a face model this project can read") from None
        last = printable((done.stderr.strip().splitlines() or [""])[-1])  # the child's words, not raw bytes
        if done.returncode == REFUSED:
            raise fail(path, last)
        if done.returncode < 0:
            name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
            raise fail(path, f"the {_NAMES[kind]} reader crashed on this file ({name}); the file is corrupt")
        if done.returncode != 0:
            raise fail(path, f"not a readable {_NAMES[kind]} file ({last or f'exit status {done.returncode}'})")
        with np.load(out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


# --- in the child ------------------------------------------------------------------------------
def _check_size(name: str, shape: tuple, total: list[int]) -> None:
    n = int(np.prod(shape, dtype=object))  # object: a product of huge dims must not wrap around
    if n > MAX_ELEMENTS:
        raise Refused(f"{name} declares {n} elements (more than {MAX_ELEMENTS}; no face model is that large)")
    total[0] += n
    if total[0] > MAX_TOTAL_ELEMENTS:
        raise Refused(f"the arrays declare over {MAX_TOTAL_ELEMENTS} elements together; no face model is that large")


def _numeric(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "biufc"  # structs, cells and text are not model arrays


def _kind(a) -> str:
    """What a MATLAB variable that is not a numeric array is, in MATLAB's words."""
    if not isinstance(a, np.ndarray):
        return f"a {type(a).__name__}"  # a sparse matrix
    return {"U": "text", "S": "text", "O": "a cell array", "V": "a struct"}.get(a.dtype.kind, f"of dtype {a.dtype}")


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        declared = scipy.io.whosmat(str(path))  # names and shapes from the headers, no data
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        return _read_h5(path)
    total = [0]
    for name, shape, _ in declared:
        if name in BFM2009_KEYS:
            _check_size(name, shape, total)
    data = {k: v for k, v in scipy.io.loadmat(str(path), variable_names=BFM2009_KEYS).items() if k in BFM2009_KEYS}
    for k, v in data.items():
        if not _numeric(v):  # present but unreadable: never a smaller model
            raise Refused(f"{k} is {_kind(v)}, not a numeric array")
    return data | {LAYOUT: np.array("bfm2009")}


def _read_dataset(f, key: str, total: list[int]) -> np.ndarray | None:
    import h5py

    node, parts = f, key.split("/")
    for i, part in enumerate(parts):
        if not isinstance(node, h5py.Group):
            raise Refused(f"{'/'.join(parts[:i])} is an HDF5 dataset, not a group holding {key}")
        if part not in node:
            return None
        node = node.get(part)
    if not isinstance(node, h5py.Dataset):
        raise Refused(f"{key} is an HDF5 {'group' if isinstance(node, h5py.Group) else 'object'}, not a dataset")
    _check_size(key, node.shape, total)
    matlab_class = node.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode(errors="replace") if isinstance(matlab_class, bytes) else str(matlab_class)
    if node.dtype.kind not in "biufc" or matlab_class in ("char", "cell", "struct"):
        raise Refused(f"{key} has dtype {node.dtype}{f' ({matlab_class})' if matlab_class else ''}, not numbers")
    stored = node.id.get_storage_size()
    # Uncompressed data must be in the file: a header that declares more is corrupt (reading
    # would fabricate fill values, or allocate gigabytes for a file of a few bytes).
    if node.compression is None and node.size and stored < node.size * node.dtype.itemsize:
        raise Refused(f"{key} declares {node.size * node.dtype.itemsize} bytes but the file stores {stored}")
    return np.asarray(node[()])


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    total = [0]
    with h5py.File(path, "r") as f:
        if "shape" not in f and "shapeMU" in f:  # MATLAB v7.3: BFM 2009, arrays stored transposed
            arrays = {k: _read_dataset(f, k, total) for k in BFM2009_KEYS}
            return {k: v.T for k, v in arrays.items() if v is not None} | {LAYOUT: np.array("bfm2009")}
        arrays = {k: _read_dataset(f, k, total) for k in BFM2017_KEYS}
    return {k: v for k, v in arrays.items() if v is not None} | {LAYOUT: np.array("bfm2017")}


def main(argv: list[str]) -> int:
    kind, path, out = argv
    try:
        arrays = (_read_mat if kind == "mat" else _read_h5)(Path(path))
    except Refused as e:
        print(e, file=sys.stderr)
        return REFUSED
    except Exception as e:  # noqa: BLE001 - any failure of a reader on this file is the same answer
        first = printable((str(e).strip().splitlines() or [type(e).__name__])[0])
        print(f"not a readable {_NAMES[kind]} file ({type(e).__name__}: {first})", file=sys.stderr)
        return REFUSED
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
