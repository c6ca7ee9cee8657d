"""Fuzz every face model loader with mutated copies of the embedded face model.

    python -m benchmarks.fuzz_loaders --files 10000 --jobs 4 --json fuzz.json

The procedural head (the embedded model, two shape and two albedo components so each file is
small) is exported in every format the loaders read: the project's ``.npz``, BFM 2009 ``.mat``,
BFM 2017 ``.h5``, eos ``.bin``, and ``.obj``, ``.off`` and ``.ply`` meshes. Each fuzzed file is
one of those with bytes flipped, overwritten with extreme values, inserted, deleted or cut off
(text meshes also get numbers replaced by 0, -1, 1e400, nan or a huge count), or, for every
other file, with its structure changed (:func:`mutate_structure`): a field of the ``.npz``,
``.mat`` or ``.h5`` made a string, a cell, a struct or an HDF5 group, given a wrong dtype or a
wrong shape, emptied or removed; an eos matrix of a wrong shape; a mesh with faces of 2 or 5
corners, wrong counts, words for numbers, or a PLY property of another type. All are drawn from a
seeded generator so a run is repeatable.

Every file is loaded with :func:`render.faces.loaders.load_face_model` and classified:

- ``accepted``: a model that passes :func:`~render.faces.loaders.validate` (a flip inside the
  data can leave a valid, slightly different model);
- ``accepted_invalid``: a model accepted from a file whose structure was broken on purpose (a field
  the loader reads made text, a cell, a struct, a group, a wrong shape, empty, a scalar, or
  removed; an eos matrix of a wrong shape; a mesh whose faces have 2 corners, a word for an index or
  no faces) that differs from the unbroken file's model: part of a model dropped or misread
  without a word. A broken field that the loader does not read leaves the model as it was and
  counts as ``accepted``. Not judged, as their result may be a valid model: a field given another
  numeric dtype, optional landmarks removed, a triangle list less its last triangle;
- ``refused``: a :class:`FaceModelError` whose message is one line starting with the file's path;
- ``bad_message``: a FaceModelError that is not one line naming the file;
- ``crash``: any other exception, or the loading process dying (a segfault);
- ``hang``: no answer within the per-file timeout.

Files load in child processes (``--jobs`` at a time, a chunk of files each) so that a crash
or a hang costs one file, not the run. The target is 0 invalid models accepted, 0 crashes, 0 hangs,
0 bad messages.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np

FORMATS = ("npz", "mat", "h5", "bin", "obj", "off", "ply")
OUTCOMES = ("accepted", "accepted_invalid", "refused", "bad_message", "crash", "hang")
BAD = ("accepted_invalid", "bad_message", "crash", "hang")
TEXT_FORMATS = ("obj", "off")
COMPONENTS = 2  # shape and albedo components kept in the exported files: small files, same layouts


# --- the base files: the embedded model in every format -----------------------------------------------
def small_model():
    """The procedural head with its first COMPONENTS shape and albedo components."""
    from dataclasses import replace

    from render.faces.procedural import procedural_face_model

    m = procedural_face_model()
    k = COMPONENTS
    return replace(
        m,
        shape_basis=m.shape_basis[:k],
        shape_std=m.shape_std[:k],
        albedo_basis=m.albedo_basis[:k],
        albedo_std=m.albedo_std[:k],
    )


def _srgb255(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    return 255.0 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _eos_eigen(a) -> bytes:
    import struct

    a = np.asarray(a, np.float32)
    a = a.reshape(-1, 1) if a.ndim == 1 else a
    return struct.pack("<ii", *a.shape) + a.T.astype("<f4").tobytes()  # Eigen stores column-major


def _eos_parts(model) -> list[np.ndarray]:
    """The six matrices of an eos file: shape mean, basis (3V, K), variances; colour likewise (0-255)."""
    mean = model.shape_mean.reshape(-1).astype(np.float64)
    basis = model.shape_basis.reshape(len(model.shape_basis), -1).T.astype(np.float64)
    tex_mean = _srgb255(model.albedo_mean.reshape(-1))
    tex_basis = model.albedo_basis.reshape(len(model.albedo_basis), -1).T * 255.0
    return [
        mean,
        basis,
        model.shape_std.astype(np.float64) ** 2,
        tex_mean,
        tex_basis,
        (model.albedo_std.astype(np.float64) * 255.0) ** 2,
    ]


def _eos_file(parts: list[np.ndarray], tri_bytes: bytes, landmarks: dict[str, int]) -> bytes:
    """eos v4, cereal binary: shape, colour (each with the triangle list), no expressions, landmarks, no texture."""
    import struct

    out = struct.pack("<I", 4) + b"".join(_eos_eigen(p) for p in parts[:3]) + tri_bytes
    out += b"".join(_eos_eigen(p) for p in parts[3:]) + tri_bytes
    out += b"\x01"  # no expression model
    names = sorted(landmarks)
    out += b"\x00" + struct.pack("<Q", len(names))
    out += b"".join(struct.pack("<Q", len(n)) + n.encode() + struct.pack("<i", landmarks[n]) for n in names)
    return out + struct.pack("<Q", 0) + struct.pack("<Q", 0)  # texture coordinates and triangles


def _eos_triangles(tris) -> bytes:
    import struct

    tri = np.asarray(tris, "<i4")
    return struct.pack("<Q", len(tri)) + tri.tobytes()


def export(model, fmt: str, path: Path) -> Path:
    """Write ``model`` as a file of format ``fmt`` (one of FORMATS), as that format's own tools lay it out."""

    path = Path(path)
    mean = model.shape_mean.reshape(-1).astype(np.float64)
    basis = model.shape_basis.reshape(len(model.shape_basis), -1).T.astype(np.float64)  # (3V, K)
    tex_mean = _srgb255(model.albedo_mean.reshape(-1))
    tex_basis = model.albedo_basis.reshape(len(model.albedo_basis), -1).T * 255.0
    tris = model.triangles
    if fmt == "npz":
        from render.faces.npz import save_npz

        save_npz(model, path)
    elif fmt == "mat":  # BFM 2009: 1-based triangles wound inwards, colours 0-255
        import scipy.io

        scipy.io.savemat(
            str(path),
            {
                "shapeMU": mean[:, None],
                "shapePC": basis,
                "shapeEV": model.shape_std.astype(np.float64)[:, None],
                "texMU": tex_mean[:, None],
                "texPC": tex_basis,
                "texEV": model.albedo_std.astype(np.float64)[:, None] * 255.0,
                "tl": (tris[:, ::-1] + 1).astype(np.float64),
            },
        )
    elif fmt == "h5":  # BFM 2017: variances, cells (3, F)
        import h5py

        with h5py.File(path, "w") as f:
            f["shape/model/mean"] = mean.astype(np.float32)
            f["shape/model/pcaBasis"] = basis.astype(np.float32)
            f["shape/model/pcaVariance"] = (model.shape_std.astype(np.float64) ** 2).astype(np.float32)
            f["shape/representer/cells"] = tris.T.astype(np.int32)
            f["color/model/mean"] = (tex_mean / 255.0).astype(np.float32)
            f["color/model/pcaBasis"] = (tex_basis / 255.0).astype(np.float32)
            f["color/model/pcaVariance"] = (model.albedo_std.astype(np.float64) ** 2).astype(np.float32)
    elif fmt == "bin":  # eos v4, cereal binary
        path.write_bytes(_eos_file(_eos_parts(model), _eos_triangles(tris.reshape(-1, 3)), model.landmarks))
    elif fmt in ("obj", "off", "ply"):
        import trimesh

        trimesh.Trimesh(vertices=model.shape_mean, faces=tris, process=False).export(str(path))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path


def base_files(directory: Path) -> dict[str, Path]:
    """The embedded model exported in every format into ``directory``."""
    model = small_model()
    return {fmt: export(model, fmt, Path(directory) / f"face.{fmt}") for fmt in FORMATS}


# --- mutations ----------------------------------------------------------------------------------------
EXTREMES = (
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # the largest int64
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",  # -1 / the largest uint64
    b"\x00\x00\x00\x00\x00\x00\xf0\x7f",  # +inf as float64
    b"\x00\x00\xc0\x7f\x00\x00\xc0\x7f",  # NaN as float32
    b"\x00\xca\x9a\x3b\x00\x00\x00\x00",  # 10^9
)
TOKENS = ("0", "-1", "1e400", "nan", "1000000000000", "-0", "2.5", "")


def _offset(rng: np.random.Generator, size: int) -> int:
    # Half the mutations land in the first kilobyte, where headers, sizes and counts live.
    return int(rng.integers(0, min(size, 1024))) if rng.random() < 0.5 else int(rng.integers(0, size))


def mutate(data: bytes, rng: np.random.Generator, text: bool = False) -> bytes:
    """One mutation of ``data`` drawn from ``rng`` (see the module doc)."""
    b = bytearray(data)
    kind = int(rng.integers(0, 6 if text else 5))
    at = _offset(rng, len(b))
    if kind == 0:  # flip 1-4 bits here and there
        for _ in range(int(rng.integers(1, 5))):
            i = _offset(rng, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # an extreme value over whatever was there
        value = EXTREMES[int(rng.integers(0, len(EXTREMES)))]
        b[at : at + len(value)] = value
    elif kind == 2:  # cut off
        del b[at:]
    elif kind == 3:  # random bytes inserted
        b[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 4:  # bytes deleted
        del b[at : at + int(rng.integers(1, 9))]
    else:  # a number of a text mesh replaced
        words = bytes(b).split(b" ")
        i = int(rng.integers(0, len(words)))
        tail = words[i][len(words[i].rstrip(b"\n")) :]
        words[i] = TOKENS[int(rng.integers(0, len(TOKENS)))].encode() + tail
        b = bytearray(b" ".join(words))
    return bytes(b)


# --- structural mutations: the types and shapes of fields, not their bytes -----------------------------
STRUCTURES = ("string", "cell", "struct", "dtype", "shape", "empty", "scalar", "missing")
BROKEN = frozenset(STRUCTURES) - {"dtype"}  # no loader may read these into a model different from the file's
OPTIONAL_FIELDS = ("landmarks",)  # a file without them is a valid model without them
TRIANGLE_FIELDS = ("triangles", "tl", "shape/representer/cells")  # a list with a row fewer is a valid mesh
WRONG_DTYPES = (np.complex64, np.bool_, np.int8, np.uint64, np.float16, "S3")


def _fields(fmt: str, path: Path) -> dict:
    """The named arrays of a container file (npz, mat, h5: by their dataset paths)."""
    if fmt == "npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    if fmt == "mat":
        import scipy.io

        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _reshaped(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = np.asarray(a)
    choices = [a.reshape(-1), a[..., None], np.stack([a, a])]
    if a.ndim >= 2:
        choices += [a.T, a[..., :-1], a[:-1]]
    elif a.size > 1:
        choices += [a[:-1], a.reshape(1, -1)]
    return choices[int(rng.integers(0, len(choices)))]


def _restructured(a: np.ndarray, kind: str, rng: np.random.Generator):
    """``a`` as ``kind`` (one of STRUCTURES but "missing"): a str, a list (cell), a dict (struct), an array."""
    a = np.asarray(a)
    if kind == "string":
        return "not a number"
    if kind == "cell":
        return [a, "x"] if rng.random() < 0.5 else [a]
    if kind == "struct":
        return {"data": a, "note": "x"}
    if kind == "dtype":
        dtype = WRONG_DTYPES[int(rng.integers(0, len(WRONG_DTYPES)))]
        return a.astype(dtype) if a.dtype.kind != "U" else np.zeros(a.shape or (1,), dtype)
    if kind == "shape":
        return _reshaped(a, rng)
    if kind == "empty":
        return np.zeros((0,) + a.shape[1:], a.dtype if a.dtype.kind != "U" else np.float32)
    return np.asarray(a.reshape(-1)[:1].item() if a.size else 0)  # scalar


def _write_fields(fmt: str, fields: dict, path: Path) -> None:
    if fmt == "npz":
        packed = {}
        for k, v in fields.items():
            if isinstance(v, (list, dict)):  # a cell or a struct: an object array, as another tool might save
                o = np.empty(len(v) if isinstance(v, list) else (), object)
                for i, x in enumerate(v) if isinstance(v, list) else [((), v)]:
                    o[i] = x
                v = o
            packed[k] = v
        with open(path, "wb") as f:
            np.savez(f, **packed)
    elif fmt == "mat":
        import scipy.io

        cells = {}
        for k, v in fields.items():
            if isinstance(v, list):
                c = np.empty((1, len(v)), object)
                for i, x in enumerate(v):
                    c[0, i] = x
                v = c
            elif isinstance(v, np.ndarray) and v.dtype == np.float16:  # MATLAB has no half: single, 1-D
                v = v.astype(np.float32).reshape(-1)
            cells[k] = v
        scipy.io.savemat(str(path), cells)
    else:
        import h5py

        def put(group, name, v):
            if isinstance(v, dict):
                g = group.create_group(name)
                for k, x in v.items():
                    put(g, k, x)
            elif isinstance(v, list):  # a cell: a group of numbered members
                put(group, name, {str(i): x for i, x in enumerate(v)})
            elif isinstance(v, str):
                group[name] = v
            else:
                group[name] = v

        with h5py.File(path, "w") as f:
            for k, v in fields.items():
                put(f, k, v)


def _eos_restructured(model, rng: np.random.Generator) -> bytes:
    """An eos .bin whose one matrix has a wrong shape (its Eigen header says so, consistently), or whose
    triangles have 2 or 4 corners; otherwise the bytes :func:`export` writes."""
    parts = _eos_parts(model)
    i = int(rng.integers(0, len(parts) + 1))
    tris = model.triangles
    if i == len(parts):  # the triangles: 2 or 4 corners
        tris = tris[:, :2] if rng.random() < 0.5 else np.concatenate([tris, tris[:, :1]], axis=1)
    else:
        wrong = _reshaped(parts[i], rng)
        parts[i] = wrong.reshape(len(wrong), -1) if wrong.ndim > 2 else wrong  # Eigen matrices have two axes
    return _eos_file(parts, _eos_triangles(tris), model.landmarks)


MESH_WORDS = (b"x", b"1/2/3", b"-", b"0x10", b"1,5")


def _mesh_restructured(data: bytes, fmt: str, rng: np.random.Generator) -> tuple[bytes, bool]:
    """A mesh with faces of 2 or 5 corners, a word for a number, no faces, or a PLY property retyped; and
    whether that broke it (2 corners, a word that is no index, no faces: a face model cannot be read from it;
    a pentagon is a polygon a mesh may hold, and a retyped PLY property may still read as numbers)."""
    if fmt == "ply":  # binary body: change the header's types and counts, which say how to read it
        head, sep, body = data.partition(b"end_header\n")
        lines = head.split(b"\n")
        i = int(rng.integers(1, len(lines) - 1))
        swaps = [
            (b"float", b"uchar"),
            (b"float", b"double"),
            (b"property list uchar int", b"property list int uchar"),
            (b"property list uchar int", b"property float"),
            (b"binary_little_endian", b"ascii"),
            (b"binary_little_endian", b"binary_big_endian"),
        ]
        old, new = swaps[int(rng.integers(0, len(swaps)))]
        swapped = old in lines[i]
        lines[i] = lines[i].replace(old, new) if swapped else b"element face 0"
        return b"\n".join(lines) + sep + body, not swapped
    lines = data.split(b"\n")
    faces = [i for i, ln in enumerate(lines) if ln.startswith(b"f ") or (fmt == "off" and ln.startswith(b"3 "))]
    kind = int(rng.integers(0, 4))
    if kind == 3 or not faces:  # no faces at all
        drop = set(faces)
        return b"\n".join(ln for i, ln in enumerate(lines) if i not in drop), True
    i = faces[int(rng.integers(0, len(faces)))]
    words = lines[i].split(b" ")
    broken = True
    if kind == 0:  # two corners
        words = words[:2] if fmt == "obj" else [b"2", *words[1:3]]
    elif kind == 1:  # five corners
        words = words + words[1:3] if fmt == "obj" else [b"5", *words[1:], *words[1:3]]
        broken = False
    else:  # a word where an index goes ("1/2/3" is OBJ's vertex/texture/normal index: valid there)
        word = MESH_WORDS[int(rng.integers(0, len(MESH_WORDS)))]
        words[int(rng.integers(1, len(words)))] = word
        broken = not (fmt == "obj" and word == b"1/2/3")
    lines[i] = b" ".join(words)
    return b"\n".join(lines), broken


def _fewer_triangles(old: np.ndarray, new) -> bool:
    """Whether ``new`` is ``old`` (triangles as rows or columns of 3) less its last triangle."""
    new = np.asarray(new)
    return new.ndim == 2 and (
        (old.shape[1] == 3 and np.array_equal(new, old[:-1]))
        or (old.shape[0] == 3 and np.array_equal(new, old[:, :-1]))
    )


def mutate_structure(fmt: str, base: Path, rng: np.random.Generator) -> tuple[bytes | dict, bool]:
    """One structural mutation of the file ``base`` of format ``fmt``: the new file's bytes, or for a
    container format the fields to write (see the module doc), and whether the mutation broke the
    file (:data:`BROKEN`: a loader that accepts it must give the unbroken file's model)."""
    if fmt in ("npz", "mat", "h5"):
        fields = _fields(fmt, base)
        name = sorted(fields)[int(rng.integers(0, len(fields)))]
        kind = STRUCTURES[int(rng.integers(0, len(STRUCTURES)))]
        if kind == "missing":
            del fields[name]
            return fields, name not in OPTIONAL_FIELDS
        old = np.asarray(fields[name])
        fields[name] = new = _restructured(old, kind, rng)
        if name in TRIANGLE_FIELDS and kind == "shape" and _fewer_triangles(old, new):
            return fields, False
        return fields, kind in BROKEN
    if fmt == "bin":
        return _eos_restructured(small_model(), rng), True
    return _mesh_restructured(base.read_bytes(), fmt, rng)


def make_mutants(directory: Path, n: int, seed: int = 0, structural: bool = True) -> list[Path]:
    """``n`` mutated model files in ``directory``, the formats in turn; with ``structural``, every
    other round of formats changes the files' structure rather than their bytes. A file whose
    structure was broken (:func:`mutate_structure`) is named ``fuzz-<i>.broken.<format>``: its
    model, if accepted, must equal the unbroken file's (``directory/base/face.<format>``)."""
    directory = Path(directory)
    bases = base_files(directory / "base")
    raw = {fmt: p.read_bytes() for fmt, p in bases.items()}
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        fmt = FORMATS[i % len(FORMATS)]
        path = directory / f"fuzz-{i:05d}.{fmt}"
        if structural and (i // len(FORMATS)) % 2:
            made, broken = mutate_structure(fmt, bases[fmt], rng)
            if broken:
                path = path.with_suffix(f".broken.{fmt}")
            if isinstance(made, dict):
                _write_fields(fmt, made, path)
            else:
                path.write_bytes(made)
        else:
            path.write_bytes(mutate(raw[fmt], rng, text=fmt in TEXT_FORMATS))
        files.append(path)
    return files


# --- classification -----------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout


def same_model(a, b) -> bool:
    """Whether two loaded face models hold the same arrays (the name aside; floats to 1e-4 relative, so that
    a field written again by another writer, in a mutant, is not a difference for its rounding alone)."""
    from dataclasses import fields

    def same(x, y) -> bool:
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True))
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if np.shape(x) != np.shape(y):
                return False
            if np.asarray(x).dtype.kind == "f" or np.asarray(y).dtype.kind == "f":
                return bool(np.allclose(x, y, rtol=1e-4, atol=1e-7))
            return np.array_equal(x, y)
        return x == y

    return all(same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a) if f.name != "name")


def _base_of(path: Path) -> Path | None:
    """The unbroken file a ``.broken.`` mutant was made from (see :func:`make_mutants`), else None."""
    if not path.name.endswith(f".broken{path.suffix}"):
        return None
    return path.parent / "base" / f"face{path.suffix}"


@functools.cache
def _base_model(path: Path):
    """The unbroken file's model: loaded once per process, not once per accepted broken file."""
    from render.faces.loaders import load_face_model

    return load_face_model(path)


def classify(path: Path, timeout_s: float) -> tuple[str, str]:
    """(outcome, message) of loading one file, in this process (SIGALRM bounds the time)."""
    from render.faces.loaders import FaceModelError, load_face_model, validate

    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        model = load_face_model(path)
        validate(model, path)  # what was accepted must be a valid model
        base = _base_of(path)
        if base is not None and not same_model(model, _base_model(base)):
            return "accepted_invalid", "a broken file loaded as a model different from the unbroken file's"
        return "accepted", ""
    except FaceModelError as e:
        message = str(e)
        one_line = "\n" not in message and message.startswith(str(path))
        return ("refused" if one_line else "bad_message"), message[:300]
    except _Timeout:
        return "hang", f"no answer in {timeout_s} s"
    except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
        return "crash", f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _child(list_file: str, timeout_s: float) -> None:
    """Classify each file of ``list_file``; one JSON line before (``start``) and after each."""
    import warnings

    from render.faces import isolated

    warnings.simplefilter("ignore")  # overflow and cast warnings of mutated arrays are expected
    isolated.TIMEOUT_S = max(1.0, timeout_s - 1.0)  # the C readers' child is killed before the file times out
    import importlib

    for module in ("h5py", "scipy.io", "trimesh"):  # the readers' imports, before any file's time starts
        importlib.import_module(module)

    for i, line in enumerate(Path(list_file).read_text().splitlines()):
        print(json.dumps({"i": i, "start": True}), flush=True)
        outcome, message = classify(Path(line), timeout_s)
        print(json.dumps({"i": i, "outcome": outcome, "message": message}), flush=True)
        if outcome == "hang":  # cut off anywhere (an import half done): the next file gets a fresh process
            sys.exit(RESTART)


RESTART = 3  # the child's exit status after a hang: the rest of its chunk goes to a new child


def _run_chunk(paths: list[Path], timeout_s: float) -> list[tuple[str, str]]:
    """Outcomes of ``paths``, loaded by one child process; restarted after a file that kills it."""
    results: list[tuple[str, str]] = []
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    while len(results) < len(paths):
        rest = paths[len(results) :]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(map(str, rest)))
        cmd = [sys.executable, "-m", "benchmarks.fuzz_loaders", "--child", f.name, "--timeout", str(timeout_s)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=30 + timeout_s * (len(rest) + 1), check=False
            )
            stdout, returncode = done.stdout, done.returncode
        except subprocess.TimeoutExpired as e:  # a hang that SIGALRM could not break
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            returncode = None
        finally:
            os.unlink(f.name)
        started = None
        for line in stdout.splitlines():
            record = json.loads(line)
            if "outcome" in record:
                results.append((record["outcome"], record["message"]))
                started = None
            else:
                started = record["i"]
        if len(results) < len(paths):
            if started is None and returncode == RESTART:
                continue
            if started is None and returncode == 0:
                raise RuntimeError("the fuzz child stopped without an answer")
            why = "killed after the chunk's time limit" if returncode is None else f"process died ({returncode})"
            results.append(("hang" if returncode is None else "crash", why))
    return results


def fuzz(files: list[Path], timeout_s: float = 30.0, jobs: int = 1, chunk: int = 50) -> list[dict]:
    """Every file's outcome: [{"file", "format", "outcome", "message"}], in order."""
    chunks = [files[i : i + chunk] for i in range(0, len(files), chunk)]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        outcomes = [o for part in pool.map(lambda c: _run_chunk(c, timeout_s), chunks) for o in part]
    return [
        {"file": str(p), "format": p.suffix[1:], "broken": _base_of(p) is not None, "outcome": o, "message": m}
        for p, (o, m) in zip(files, outcomes, strict=True)
    ]


def summarise(records: list[dict]) -> dict:
    """Counts per outcome, overall and per format, and the files with a bad outcome."""
    counts = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
    per_format = {
        fmt: {o: sum(r["outcome"] == o and r["format"] == fmt for r in records) for o in OUTCOMES} for fmt in FORMATS
    }
    contained = sum(r["outcome"] == "refused" and "crashed on this file" in r["message"] for r in records)
    return {
        "files": len(records),
        "broken_files": sum(r["broken"] for r in records),  # structure broken on purpose: refuse, or load as before
        "outcomes": counts,
        "reader_crashes_contained": contained,  # refused after a C reader died in its child process
        "per_format": per_format,
        "bad": [r for r in records if r["outcome"] in BAD],
    }


@click.command()
@click.option("--files", "n_files", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="child processes at once")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 3600), default=30.0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the summary here")
@click.option("--child", "child_list", hidden=True)
def main(n_files, seed, jobs, timeout_s, json_path, child_list):
    """Fuzz the face model loaders; print and write the outcome counts (exit status 1 on any bad outcome)."""
    if child_list:
        _child(child_list, timeout_s)
        return
    from benchmarks import record

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcign-fuzz-") as tmp:
        files = make_mutants(Path(tmp), n_files, seed)
        summary = summarise(fuzz(files, timeout_s, jobs))
    for r in summary["bad"]:
        r["file"] = Path(r["file"]).name  # the temporary folder is gone
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "bad"}, indent=2))
    if json_path:
        record.write(json_path, "fuzz_loaders", {"files": n_files, "seed": seed, "timeout_s": timeout_s}, summary)
    if summary["bad"]:
        for r in summary["bad"][:20]:
            click.echo(f"{r['outcome']}: {r['file']}: {r['message']}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
