"""Bad input to every command: a one-line error naming the file or option, a non-zero exit, no
traceback, nothing left behind; and a fuzz run of every face model loader.

Each case builds its bad input from what the project writes itself (the embedded face model
exported by :mod:`benchmarks.fuzz_loaders`, a sweep rendered by the renderer, a checkpoint written
by the trainer) with one thing wrong, runs the command in this process (a crash of a C library
would take the test run down with it) and checks the answer and the folder it ran in.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from benchmarks import fuzz_loaders
from dcign.cli import main as train_cli
from pipeline.evaluation.evaluate import main as evaluate_cli
from pipeline.review.rerender import main as rerender_cli
from render.cli import main as render_cli
from render.faces.cli import main as faces_cli

CLIS = {
    "dcign-render": render_cli,
    "dcign-faces": faces_cli,
    "dcign-train": train_cli,
    "dcign-evaluate": evaluate_cli,
    "dcign-rerender": rerender_cli,
}
FUZZ_FILES = 210  # 30 per format in CI; benchmarks/fuzz_loaders.py runs 10,000 and more


# --- bad files, each from a real one with one thing wrong ------------------------------------------------
def _npz_with(base: Path, path: Path, **changes) -> Path:
    with np.load(base, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key]) if callable(change) else change
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _outlier(mean: np.ndarray) -> np.ndarray:
    mean = mean.astype(np.float64)
    mean[0] = 1e300  # the rest collapses to a point once the frame is fitted
    return mean


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _huge_h5(path: Path, key: str) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, shape=(10**10,), dtype="f4")  # declared, never written: a few hundred bytes
    return path


def _flipped(base: Path, path: Path, offset: int) -> Path:
    data = bytearray(base.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _deep_yaml(path: Path) -> Path:
    path.write_text("seed: " + "[" * 100_000 + "]" * 100_000 + "\n")
    return path


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Every bad file of the cases below, by name, in a folder of their own."""
    d = tmp_path_factory.mktemp("bad_files")
    base = fuzz_loaders.base_files(d / "base")
    npz = base["npz"]
    files = {
        "not_utf8.yaml": d / "not_utf8.yaml",
        "list.yaml": d / "list.yaml",
        "deep.yaml": _deep_yaml(d / "deep.yaml"),
        "huge_bootstrap.yaml": d / "huge_bootstrap.yaml",
        "fifo.npz": _fifo(d / "fifo.npz"),
        "fifo.obj": _fifo(d / "fifo.obj"),
        "fifo.png": _fifo(d / "fifo.png"),
        "fifo_calibration.npz": _fifo(d / "fifo_calibration.npz"),
        "scaled.npz": _npz_with(npz, d / "scaled.npz", shape_mean=lambda m: m * 1000),
        "offset.npz": _npz_with(npz, d / "offset.npz", shape_mean=lambda m: m + 50),
        "boolean.npz": _npz_with(npz, d / "boolean.npz", shape_mean=lambda m: m > 0),
        "complex.npz": _npz_with(npz, d / "complex.npz", shape_basis=lambda b: b * (1 + 1j)),
        "outlier.npz": _npz_with(npz, d / "outlier.npz", shape_mean=_outlier),
        "non_unit.npz": _npz_with(npz, d / "non_unit.npz", shape_basis=lambda b: b * 3),
        "landmark_range.npz": _npz_with(npz, d / "landmark_range.npz", landmarks=np.array('{"nose": 99999999}')),
        "landmark_1e400.npz": _npz_with(npz, d / "landmark_1e400.npz", landmarks=np.array('{"nose": 1e400}')),
        "landmark_deep.npz": _npz_with(npz, d / "landmark_deep.npz", landmarks=np.array("[" * 100_000 + "]" * 100_000)),
        "triangle_range.npz": _npz_with(npz, d / "triangle_range.npz", triangles=lambda t: t + 10**6),
        "nan.npz": _npz_with(npz, d / "nan.npz", shape_std=lambda s: s * np.nan),
        "garbage.npz": d / "garbage.npz",
        "zero_index.obj": d / "zero_index.obj",
        "flat_vertices.obj": d / "flat_vertices.obj",
        "two_corners.obj": d / "two_corners.obj",
        "hex_index.obj": d / "hex_index.obj",
        "two_corners.off": d / "two_corners.off",
        "long_header.npz": d / "long_header.npz",
        "huge_header.off": d / "huge_header.off",
        "huge.h5": _huge_h5(d / "huge.h5", "shape/model/mean"),
        "huge_v73.mat": _huge_h5(d / "huge_v73.mat", "shapeMU"),
        # One byte of the first variable's header: scipy's reader dies of SIGSEGV on this file.
        "flipped.mat": _flipped(base["mat"], d / "flipped.mat", 184),
        "truncated.mat": d / "truncated.mat",
        "complex.mat": d / "complex.mat",
        "version9.bin": d / "version9.bin",
        "truncated.bin": d / "truncated.bin",
        "unknown.xyz": d / "unknown.xyz",
        "no_meshes": d / "no_meshes",
        "garbage_calibration.npz": d / "garbage_calibration.npz",
        "truncated_calibration.npz": d / "truncated_calibration.npz",
        "huge_header.png": d / "huge_header.png",
        "huge_header.jpg": d / "huge_header.jpg",
        "bomb_header.jpg": d / "bomb_header.jpg",
        "not_an_image.png": d / "not_an_image.png",
        "face.png": d / "face.png",
    }
    files["not_utf8.yaml"].write_bytes(b"seed: 0\nrender:\n  model: caf\xe9\n")
    files["list.yaml"].write_text("- seed: 0\n- render: {}\n")
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["evaluate"]["bootstrap"] = 10**12
    files["huge_bootstrap.yaml"].write_text(yaml.safe_dump(params))
    files["garbage.npz"].write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    obj = base["obj"].read_text()
    files["zero_index.obj"].write_text(re.sub(r"^f (\d+)", "f 0", obj, count=1, flags=re.M))
    # Found by the 10,000-file fuzz run: "v" lines of two numbers, and an .npy header over numpy's limit.
    files["flat_vertices.obj"].write_text(re.sub(r"^v (\S+) (\S+) \S+", r"v \1 \2", obj, flags=re.M))
    # Found by the fuzz run that compares a broken file's model with the unbroken one's: trimesh dropped
    # these faces without a word.
    files["two_corners.obj"].write_text(re.sub(r"^f (\S+) (\S+) \S+", r"f \1 \2", obj, count=1, flags=re.M))
    files["hex_index.obj"].write_text(re.sub(r"^f (\S+) (\S+) \S+", r"f \1 \2 0x10", obj, count=1, flags=re.M))
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (15733 - len(header)) + b"\n"
    with zipfile.ZipFile(files["long_header.npz"], "w") as z:
        z.writestr("shape_mean.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(8))
    off = base["off"].read_text().splitlines()
    counts = off[1].split()
    files["huge_header.off"].write_text("\n".join([off[0], f"{counts[0]} 1000000000000 0", *off[2:]]) + "\n")
    face = 2 + int(counts[0])  # the first face line
    files["two_corners.off"].write_text(
        "\n".join([*off[:face], "2 " + " ".join(off[face].split()[1:3]), *off[face + 1 :]])
    )
    raw_mat = base["mat"].read_bytes()
    files["truncated.mat"].write_bytes(raw_mat[: len(raw_mat) // 3])
    import scipy.io

    mat = scipy.io.loadmat(str(base["mat"]))
    scipy.io.savemat(
        str(files["complex.mat"]),
        {**{k: v for k, v in mat.items() if not k.startswith("__")}, "shapeMU": mat["shapeMU"] * (1 + 1j)},
    )
    raw_bin = base["bin"].read_bytes()
    files["version9.bin"].write_bytes(b"\x09\x00\x00\x00" + raw_bin[4:])
    files["truncated.bin"].write_bytes(raw_bin[: len(raw_bin) // 2])
    files["unknown.xyz"].write_text("not a model\n")
    files["no_meshes"].mkdir()
    (files["no_meshes"] / "readme.txt").write_text("no meshes here\n")
    files["garbage_calibration.npz"].write_bytes(os.urandom(64))
    with open(d / "calibration.npz", "wb") as f:
        np.savez(f, azimuth_latents=np.array([0]), azimuth_angles=np.linspace(-90, 90, 5))
    raw_cal = (d / "calibration.npz").read_bytes()
    files["truncated_calibration.npz"].write_bytes(raw_cal[: len(raw_cal) // 2])
    import cv2

    ok, png = cv2.imencode(".png", np.full((16, 16), 128, np.uint8))
    files["face.png"].write_bytes(png.tobytes())
    header = bytearray(png.tobytes())
    header[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR width and height
    files["huge_header.png"].write_bytes(bytes(header))
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16), 128, np.uint8))
    for name, side in (("huge_header.jpg", 9000), ("bomb_header.jpg", 60000)):  # under / over Pillow's own limit
        data = bytearray(jpg.tobytes())
        sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
        data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
        files[name].write_bytes(bytes(data))
    files["not_an_image.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    return files


# --- one case: a command, its arguments, the name its error must say -------------------------------------
# ``{name}`` in an argument is the bad file of that name; ``{out}`` a path in the test's empty folder;
# ``{sweep}``/``{checkpoint}`` the rendered sweep and the trained checkpoint (those cases are slow).
CASES = [
    # dcign-render: numeric options, checked before any work
    ("dcign-render", "--sweep azimuth --batches 1000000000000 --out {out}", "batches must be at most"),
    ("dcign-render", "--sweep azimuth --batches 1 --resolution 100000 --out {out}", "resolution must be at most"),
    ("dcign-render", "--sweep azimuth --batches 1 --samples 100000000 --out {out}", "samples must be at most"),
    ("dcign-render", "--sweep azimuth --batches 2 --batch-size 100000000 --out {out}", "batch_size must be at most"),
    ("dcign-render", "--sweep azimuth --batches 1 --batches-per-shard 200000 --out {out}", "batches_per_shard"),
    ("dcign-render", "--sweep azimuth --batches 1 --shard 0/1000000 --out {out}", "--shard"),
    ("dcign-render", "--sweep azimuth --batches 1 --shard 1/1 --out {out}", "--shard"),
    ("dcign-render", "--sweep azimuth --batches 1 --workers 100000 --out {out}", "--workers"),
    ("dcign-render", "--sweep azimuth --batches 1 --workers -1 --out {out}", "--workers"),
    ("dcign-render", "--sweep azimuth --batches 1 --seed -1 --out {out}", "--seed"),
    ("dcign-render", "--sweep azimuth --batches 0 --out {out}", "--batches"),
    ("dcign-render", "--sweep zoom --batches 1 --out {out}", "zoom"),
    # dcign-render: params files
    ("dcign-render", "--params {not_utf8.yaml} --sweep azimuth --batches 1 --out {out}", "{not_utf8.yaml}"),
    ("dcign-render", "--params {list.yaml} --sweep azimuth --batches 1 --out {out}", "{list.yaml}"),
    ("dcign-render", "--params {deep.yaml} --sweep azimuth --batches 1 --out {out}", "{deep.yaml}"),
    ("dcign-render", "--params {out}.yaml --sweep azimuth --batches 1 --out {out}", "params file not found"),
    # dcign-render: face models
    ("dcign-render", "--sweep azimuth --batches 1 --model {fifo.npz} --out {out}", "{fifo.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {scaled.npz} --out {out}", "{scaled.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {offset.npz} --out {out}", "{offset.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {boolean.npz} --out {out}", "{boolean.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {complex.npz} --out {out}", "{complex.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {outlier.npz} --out {out}", "{outlier.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {non_unit.npz} --out {out}", "{non_unit.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {landmark_range.npz} --out {out}", "{landmark_range.npz}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {huge.h5} --out {out}", "{huge.h5}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {flipped.mat} --out {out}", "{flipped.mat}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {zero_index.obj} --out {out}", "{zero_index.obj}"),
    ("dcign-render", "--sweep azimuth --batches 1 --model {out}.mat --out {out}", ".mat: no such file"),
    # dcign-render preview
    ("dcign-render", "preview --sweep azimuth --seed -1 -o {out}.png", "--seed"),
    ("dcign-render", "preview --sweep azimuth --batches 1000 -o {out}.png", "--batches"),
    ("dcign-render", "preview --sweep azimuth --max-images 0 -o {out}.png", "--max-images"),
    ("dcign-render", "preview --sweep azimuth --model {scaled.npz} -o {out}.png", "{scaled.npz}"),
    ("dcign-render", "preview --data {no_meshes} -o {out}.png", "no manifest.json"),
    # dcign-faces
    ("dcign-faces", "info {fifo.obj}", "{fifo.obj}"),
    ("dcign-faces", "info {scaled.npz}", "{scaled.npz}"),
    ("dcign-faces", "info {complex.npz}", "{complex.npz}"),
    ("dcign-faces", "info {nan.npz}", "{nan.npz}"),
    ("dcign-faces", "info {triangle_range.npz}", "{triangle_range.npz}"),
    ("dcign-faces", "info {landmark_1e400.npz}", "{landmark_1e400.npz}"),
    ("dcign-faces", "info {landmark_deep.npz}", "{landmark_deep.npz}"),
    ("dcign-faces", "info {garbage.npz}", "{garbage.npz}"),
    ("dcign-faces", "info {flat_vertices.obj}", "vertices must have 3 coordinates"),
    ("dcign-faces", "info {two_corners.obj}", "{two_corners.obj}: line"),
    ("dcign-faces", "info {hex_index.obj}", "'0x10' is not a vertex index"),
    ("dcign-faces", "info {two_corners.off}", "{two_corners.off}: face 0: a corner count of '2'"),
    ("dcign-faces", "info {long_header.npz}", "not a plain .npz archive (Header info length"),
    ("dcign-faces", "info {huge_header.off}", "{huge_header.off}"),
    ("dcign-faces", "info {huge_v73.mat}", "{huge_v73.mat}"),
    ("dcign-faces", "info {flipped.mat}", "{flipped.mat}"),
    ("dcign-faces", "info {truncated.mat}", "{truncated.mat}"),
    ("dcign-faces", "info {complex.mat}", "{complex.mat}"),
    ("dcign-faces", "info {version9.bin}", "{version9.bin}"),
    ("dcign-faces", "info {truncated.bin}", "{truncated.bin}"),
    ("dcign-faces", "info {unknown.xyz}", "{unknown.xyz}"),
    ("dcign-faces", "info {no_meshes}", "{no_meshes}"),
    ("dcign-faces", "preview --seed -1 -o {out}.png", "--seed"),
    ("dcign-faces", "preview --n 100000 -o {out}.png", "--n"),
    ("dcign-faces", "preview --resolution 100000 -o {out}.png", "--resolution"),
    ("dcign-faces", "preview --model {outlier.npz} -o {out}.png", "{outlier.npz}"),
    # dcign-train: options and params, before any data is read
    ("dcign-train", "--params {not_utf8.yaml} --data {out}d --out {out}", "{not_utf8.yaml}"),
    ("dcign-train", "--params {list.yaml} --data {out}d --out {out}", "{list.yaml}"),
    ("dcign-train", "--params {repo}/params.yaml --set train.lr=abc --data {out}d --out {out}", "train.lr"),
    ("dcign-train", "--params {repo}/params.yaml --set lr=-1e-3 --data {out}d --out {out}", "train.lr"),
    ("dcign-train", "--params {repo}/params.yaml --set steps=10000000000 --data {out}d --out {out}", "train.steps"),
    (
        "dcign-train",
        "--params {repo}/params.yaml --set batches_per_step=100000 --data {out}d --out {out}",
        "train.batches_per_step",
    ),
    ("dcign-train", "--params {repo}/params.yaml --set bogus=1 --data {out}d --out {out}", "--set"),
    ("dcign-train", "--params {repo}/params.yaml --data {out}d --data {out}d --out {out}", "--data"),
    ("dcign-train", "--params {repo}/params.yaml --data {out}d --out {out}", "does not exist"),
    # dcign-evaluate
    (
        "dcign-evaluate",
        "--params {not_utf8.yaml} --model a={out} --test {out} --grid {out} --recognition {out} --train"
        " {out} --out {out}",
        "{not_utf8.yaml}",
    ),
    (
        "dcign-evaluate",
        "--params {huge_bootstrap.yaml} --model a={out} --test {out} --grid {out} --recognition {out} --train"
        " {out} --out {out}",
        "evaluate.bootstrap must be at most",
    ),
    (
        "dcign-evaluate",
        "--params {repo}/params.yaml --model 1x={out} --test {out} --grid {out} --recognition {out} --train"
        " {out} --out {out}",
        "--model",
    ),
    (
        "dcign-evaluate",
        "--params {repo}/params.yaml --model a={out} --test {out}t --grid {out}g --recognition {out}r"
        " --train {out}t --out {out}",
        "does not exist",
    ),
    # dcign-rerender, before the model loads
    ("dcign-rerender", "--checkpoint {out}c --image {face.png} -o {out}.png", "cannot read checkpoint"),
    ("dcign-rerender", "--checkpoint {out}c --image {face.png} --set azimuth=abc -o {out}.png", "--set"),
    ("dcign-rerender", "--checkpoint {out}c --image {face.png} --size 100000 -o {out}.png", "--size"),
    ("dcign-rerender", "--checkpoint {out}c --image {face.png} -o {out}/missing/out.png", "{out}/missing/out.png"),
    # with a sweep rendered by the renderer (slow)
    ("dcign-render", "preview --data {sweep_list_manifest} -o {out}.png", "manifest.json"),
    ("dcign-train", "--params {repo}/params.yaml --data {sweep} --data {sweep} --out {out}", "given twice"),
    ("dcign-train", "--params {repo}/params.yaml --data {sweep_list_manifest} --out {out}", "manifest.json"),
    (
        "dcign-render",
        "--sweep azimuth --batches 2 --resolution 16 --samples 2 --batch-size 4 --out {sweep_list_manifest}",
        "manifest.json",
    ),
    (
        "dcign-evaluate",
        "--params {repo}/params.yaml --model a={checkpoint} --test {sweep} --grid {sweep} --recognition"
        " {sweep} --train {sweep} --out {out}",
        "--grid needs grid",
    ),
    # with a checkpoint written by the trainer (slow)
    (
        "dcign-rerender",
        "--checkpoint {checkpoint} --image {face.png} --set azimuth=10 --calibration"
        " {garbage_calibration.npz} -o {out}.png",
        "{garbage_calibration.npz}",
    ),
    (
        "dcign-rerender",
        "--checkpoint {checkpoint} --image {face.png} --set azimuth=10 --calibration"
        " {truncated_calibration.npz} -o {out}.png",
        "{truncated_calibration.npz}",
    ),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {huge_header.png} -o {out}.png", "{huge_header.png}"),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {huge_header.jpg} -o {out}.png", "9000x9000 image larger"),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {bomb_header.jpg} -o {out}.png", "{bomb_header.jpg}"),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {not_an_image.png} -o {out}.png", "{not_an_image.png}"),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {fifo.png} -o {out}.png", "{fifo.png}"),
    (
        "dcign-rerender",
        "--checkpoint {checkpoint} --image {face.png} --set azimuth=10 --calibration {fifo_calibration.npz}"
        " -o {out}.png",
        "{fifo_calibration.npz}",
    ),
    ("dcign-rerender", "--checkpoint {checkpoint} --image {face.png} --set azimuth=10 -o {out}.png", "--calibration"),
]
SLOW_KEYS = ("{sweep", "{checkpoint}")


def _case_id(case) -> str:
    """The command and what its error must name (the bad file or the option): ``dcign-faces:scaled.npz``."""
    cli, _, names = case
    return f"{cli}:{re.sub(r'[^A-Za-z0-9=._-]+', '_', names).strip('_')}"


def _params(cases):
    for case in cases:
        marks = [pytest.mark.slow] if any(k in case[1] for k in SLOW_KEYS) else []
        yield pytest.param(*case, id=_case_id(case), marks=marks)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def produced(request, tmp_path_factory):
    """A tiny sweep rendered by the renderer, a copy whose manifest is a list, and a checkpoint trained on it."""
    from dcign.config import load_config
    from dcign.train import train
    from render.engine import render_sweep
    from render.job import job_from_params

    root = tmp_path_factory.mktemp("produced")
    options = dict(resolution=16, samples=2, batch_size=4, batches_per_shard=1)
    sweep = root / "azimuth"
    render_sweep(job_from_params(None, "azimuth", "train", 2, **options), sweep, workers=1, progress=False)
    listed = root / "listed"
    listed.mkdir()
    for p in sweep.iterdir():
        (listed / p.name).write_bytes(p.read_bytes())
    (listed / "manifest.json").write_text(json.dumps([json.loads((sweep / "manifest.json").read_text())]))
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml", ("steps=2", "filters=[4, 4]", "latent=6"))
    train(replace(cfg, precision="fp32", device="cpu"), [sweep], root / "model")
    return {"sweep": sweep, "sweep_list_manifest": listed, "checkpoint": root / "model"}


def _values(text: str, files: dict, out: Path, request) -> dict[str, str]:
    """What each ``{name}`` of a case stands for."""
    names = set(re.findall(r"\{([^}]+)\}", text))
    values = {"out": str(out), "repo": str(Path(__file__).resolve().parents[1])}
    if names & {"sweep", "sweep_list_manifest", "checkpoint"}:
        values.update({k: str(v) for k, v in request.getfixturevalue("produced").items()})
    values.update({k: str(v) for k, v in files.items() if k in names})
    return values


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: values[m[1]], text)


@pytest.mark.parametrize("cli, args, names", list(_params(CASES)))
def test_bad_input_is_one_line_naming_it(cli, args, names, bad_files, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    values = _values(args + names, bad_files, out, request)
    argv = [_fill(word, values) for word in args.split()]
    expected = _fill(names, values)
    watched = [tmp_path, bad_files["scaled.npz"].parent]
    if "sweep" in values:
        watched.append(Path(values["sweep"]).parent)
    before = [tree(d) for d in watched]
    shm = set(Path("/dev/shm").glob("dcign-*")) if Path("/dev/shm").is_dir() else set()

    result = CliRunner().invoke(CLIS[cli], argv)

    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert expected in errors[0], result.output
    assert [tree(d) for d in watched] == before  # no output, no empty folder, no temporary file
    if Path("/dev/shm").is_dir():
        assert set(Path("/dev/shm").glob("dcign-*")) <= shm


def test_the_suite_has_sixty_cases_across_every_command():
    assert len(CASES) >= 60
    assert {cli for cli, _, _ in CASES} == set(CLIS)


def test_lr_in_exponent_notation_is_a_number(tmp_path):
    from dcign.config import load_config

    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert load_config(params, ("train.lr=1e-3",)).lr == 0.001
    written = tmp_path / "params.yaml"
    written.write_text(params.read_text().replace("lr: ", "lr: 2e-4 #", 1))
    assert load_config(written).lr == 2e-4


# --- fuzzing the loaders ---------------------------------------------------------------------------------
def test_the_embedded_model_exported_in_every_format_loads(tmp_path):
    for fmt, path in fuzz_loaders.base_files(tmp_path).items():
        assert fuzz_loaders.classify(path, timeout_s=120) == ("accepted", ""), fmt


@pytest.mark.slow  # a few hundred files, read by child processes
def test_fuzzed_model_files_give_a_model_or_one_line_naming_the_file(tmp_path):
    files = fuzz_loaders.make_mutants(tmp_path, FUZZ_FILES, seed=1)
    summary = fuzz_loaders.summarise(fuzz_loaders.fuzz(files, timeout_s=60, jobs=2))
    assert summary["files"] == FUZZ_FILES
    assert summary["bad"] == []
    assert summary["outcomes"]["refused"] > FUZZ_FILES // 3  # the mutations do reach the checks
    assert all(
        sum(counts.values()) == FUZZ_FILES // len(fuzz_loaders.FORMATS) for counts in summary["per_format"].values()
    )
