"""Render a sweep into resumable, checksummed shards with a pool of Blender workers.

Shard ``k`` holds batches ``[k * per_shard, (k + 1) * per_shard)``. Every shard is
written atomically, then its sidecar ``shard-k.json`` (checksum, batch range,
config), then the manifest is rebuilt from the sidecars. A rerun verifies what
is there, skips complete shards and renders the rest; a killed run therefore
resumes, and since a batch is a pure function of (seed, sweep, batch index) the
result is byte-identical to an uninterrupted run. ``--shard i/n`` renders only
shards with ``k % n == i``, so several machines can fill one directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from render import shards
from render.shards import ALL_SWEEPS, GRID, RECOGNITION, ShardError
from render.sweeps import SweepConfig, batch_factors, grid_batches

COLOURS = ("grey", "rgb")


@dataclass(frozen=True)
class RenderJob:
    """Everything that determines a sweep's bytes (and nothing that doesn't, like worker counts)."""

    sweep: str  # one of ALL_SWEEPS (the six training sweeps, the evaluation grid or the recognition set)
    n_batches: int  # render batches in this sweep
    seed: int = 0  # drives every random draw
    resolution: int = 64  # square image side, pixels
    samples: int = 4  # Cycles samples per pixel (4: PSNR 37 dB against 512 at 64x64)
    batches_per_shard: int = 25  # batches stored per shard file
    model: str = "default"  # face model: "default" (procedural) or a path
    colour: str = "grey"  # grey (paper) or rgb
    device: str = "cpu"  # Cycles device: cpu, cuda, optix
    sweep_cfg: SweepConfig = field(default_factory=SweepConfig)

    def validate(self) -> None:
        if self.sweep not in ALL_SWEEPS:
            raise ValueError(f"--sweep: unknown sweep {self.sweep!r}; choose one of {', '.join(ALL_SWEEPS)}")
        for name in ("n_batches", "resolution", "samples", "batches_per_shard"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name.replace('n_batches', 'batches')} must be a positive integer, got {value!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {self.colour!r}")
        self.sweep_cfg.validate()
        if self.sweep == GRID and self.n_batches != grid_batches(self.sweep_cfg):
            raise ValueError(f"the grid has {grid_batches(self.sweep_cfg)} batches, got batches={self.n_batches}")
        if self.sweep == RECOGNITION and self.n_batches != int(self.sweep_cfg.recognition[0]):
            n = int(self.sweep_cfg.recognition[0])
            raise ValueError(f"the recognition set has {n} batches (one per identity), got batches={self.n_batches}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_batches // self.batches_per_shard)

    def shard_batches(self, k: int) -> range:
        return range(k * self.batches_per_shard, min((k + 1) * self.batches_per_shard, self.n_batches))


def model_fingerprint(model) -> str:
    """SHA-256 over the arrays that shape the images, so a different face model never mixes in."""
    h = hashlib.sha256()
    for arr in (
        model.shape_mean,
        model.shape_basis,
        model.shape_std,
        model.albedo_mean,
        model.albedo_basis,
        model.albedo_std,
        model.triangles,
    ):
        h.update(np.ascontiguousarray(arr).tobytes())
    for verts, cols in getattr(model, "identities", None) or []:
        h.update(np.ascontiguousarray(verts).tobytes())
        h.update(np.ascontiguousarray(cols).tobytes())
    return h.hexdigest()


def job_config(job: RenderJob, fingerprint: str) -> dict:
    cfg = asdict(job)
    cfg["sweep_cfg"]["ranges"] = {k: list(map(float, v)) for k, v in job.sweep_cfg.ranges.items()}
    if job.sweep != RECOGNITION:  # its sizes shape no other sweep's bytes
        del cfg["sweep_cfg"]["recognition"]
    cfg["model_sha256"] = fingerprint
    cfg["format"] = shards.FORMAT
    return json.loads(json.dumps(cfg))  # as it reads back from disk (tuples become lists)


def software_versions() -> dict:
    import bpy  # only workers and this record need Blender

    return {"python": platform.python_version(), "blender": bpy.app.version_string, "numpy": np.__version__}


def allowed_cores() -> list[int]:
    """The cores this process may run on (a batch scheduler's allocation, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def load_model(spec: str):
    from render.faces.loaders import load_face_model

    return load_face_model(None if spec in ("", "default") else spec)


# --- worker side -------------------------------------------------------------------------------
_W: dict = {}


def _init_worker(job: RenderJob) -> None:
    from render.scene import FaceScene

    _W["job"] = job
    _W["model"] = load_model(job.model)
    # One render thread per process: both cores stay busy through processes, and
    # pixels do not depend on how many workers there are.
    _W["scene"] = FaceScene(job.resolution, job.samples, threads=1, device=job.device)


def _claim_core(owners, cores: list[int]) -> None:
    """Pin this worker to a core that no live sibling holds.

    While Cycles renders, Blender's main thread waits by spinning (sched_yield). Left
    to the scheduler, two workers' render threads can share a core while both spinners
    hold the other; one core per worker keeps each render thread beside its own spinner.
    """
    with owners.get_lock():
        for i, pid in enumerate(owners):
            if pid == 0 or not os.path.exists(f"/proc/{pid}"):  # free, or its worker was retired
                owners[i] = os.getpid()
                os.sched_setaffinity(0, {cores[i]})
                return


def _init_pool_worker(job: RenderJob, owners=None, cores: list[int] | None = None) -> None:
    # A spawned child inherits the parent's sys.path, which bpy extended with its own
    # script folders; one of them holds a bare ``bpy`` that shadows the real module.
    sys.path[:] = [p for p in sys.path if not re.search(r"[/\\]bpy[/\\]\d+\.\d+[/\\]", p)]
    if owners is not None:
        _claim_core(owners, cores)
    try:
        _init_worker(job)
    except Exception as e:  # a failing initializer would make the pool respawn workers forever
        _W["error"] = f"render worker failed to start: {type(e).__name__}: {e}"


def render_batch(scene, model, job: RenderJob, batch_index: int) -> dict[str, np.ndarray]:
    """One render batch's arrays. Faces are built with one BLAS thread in every code path.

    A face is ``mean + basis @ coefficients``; a multi-threaded BLAS sums that product in another
    order than a single-threaded one and a pixel can then change by a grey level, so the bytes
    would depend on the worker count (pool workers have one thread) and on the cores allowed.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _render_batch(scene, model, job, batch_index)


def _render_batch(scene, model, job: RenderJob, batch_index: int) -> dict[str, np.ndarray]:
    from render.scene import _instance, _triangles, to_grey

    f = batch_factors(
        job.seed,
        job.sweep,
        batch_index,
        job.sweep_cfg,
        model.n_shape,
        model.n_albedo,
        getattr(model, "n_identities", None),
    )
    images = []
    for i in range(job.sweep_cfg.batch_size):
        ident = int(f["identity"][i]) if getattr(model, "n_identities", None) else None
        verts, cols = _instance(model, f["shape"][i], f["albedo"][i], ident)
        scene.set_face(verts, cols, _triangles(model, ident))
        scene.set_pose(float(f["azimuth"][i]), float(f["elevation"][i]), float(f["light"][i]))
        rgb = scene.render_image()
        images.append(to_grey(rgb) if job.colour == "grey" else rgb)
    f["images"] = np.stack(images)
    return f


def _render_shard(k: int) -> tuple[int, dict[str, np.ndarray], tuple[float, float]]:
    """Shard ``k``'s arrays, and when this worker started and finished it (wall clock)."""
    if "error" in _W:
        raise ShardError(_W["error"])
    started = time.time()
    job, model, scene = _W["job"], _W["model"], _W["scene"]
    batches = [render_batch(scene, model, job, b) for b in job.shard_batches(k)]
    arrays = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
    arrays["batch_index"] = np.array(list(job.shard_batches(k)), dtype=np.int64)
    arrays["sweep"] = np.array(job.sweep)
    return k, arrays, (started, time.time())


# --- main side ---------------------------------------------------------------------------------
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_blas_thread():
    """Workers spawned inside run numpy with one BLAS thread.

    Idle BLAS threads spin after each face is built and take CPU from the render
    threads; the environment is read when a worker imports numpy, so it is set here.
    """
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ShardError(f"{out_dir}: output directory is not writable ({e.strerror or e})") from None


def _sidecar(out_dir: Path, k: int) -> Path:
    return out_dir / shards.shard_name(k).replace(".npz", ".json")


def scan(out_dir: Path, job: RenderJob, config: dict) -> tuple[dict, list[int]]:
    """Verified shard entries present in ``out_dir`` and the indices of corrupt ones."""
    manifest = shards.read_manifest(out_dir)
    if manifest is not None and manifest.get("config") != config:
        raise ShardError(
            f"{out_dir / shards.MANIFEST}: rendered with different params; delete the directory or use another --out"
        )
    done, corrupt = {}, []
    for k in range(job.n_shards):
        side = _sidecar(out_dir, k)
        if not side.exists():
            continue
        try:
            entry = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            corrupt.append(k)
            continue
        if entry.get("config") != config:
            raise ShardError(f"{side}: rendered with different params; delete the directory or use another --out")
        name = shards.shard_name(k)
        if shards.verify_shard(out_dir, name, entry):
            done[name] = {"sha256": entry["sha256"], "batches": entry["batches"]}
        else:
            corrupt.append(k)
    return done, corrupt


def write_manifest(out_dir: Path, job: RenderJob, config: dict, done: dict, versions: dict) -> None:
    shards.atomic_write_json(
        out_dir / shards.MANIFEST,
        {
            "format": shards.FORMAT,
            "sweep": job.sweep,
            "n_shards": job.n_shards,
            "n_batches": job.n_batches,
            "complete": len(done) == job.n_shards,
            "config": config,
            "versions": versions,
            "shards": dict(sorted(done.items())),
        },
    )


def parse_shard_spec(spec: str | None) -> tuple[int, int]:
    if spec is None:
        return 0, 1
    parts = spec.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--shard must look like i/n with integers 0 <= i < n, got {spec!r}")
    i, n = int(parts[0]), int(parts[1])
    if n <= 0 or i >= n:
        raise ValueError(f"--shard must look like i/n with integers 0 <= i < n, got {spec!r}")
    return i, n


def render_sweep(
    job: RenderJob,
    out_dir: Path,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    restart_every: int = 2000,
) -> dict:
    """Render (or finish rendering) one sweep into ``out_dir``; return a summary.

    ``workers`` 0 means one per allowed core, each pinned to its own. Workers are restarted after about
    ``restart_every`` images so Blender's memory stays flat on long runs.
    """
    t_start = time.perf_counter()
    job.validate()
    out_dir = Path(out_dir)
    model = load_model(job.model)  # fail early, in the main process, on a bad model
    config = job_config(job, model_fingerprint(model))
    _check_writable(out_dir)
    done, corrupt = scan(out_dir, job, config)
    versions = software_versions()

    mine = [k for k in range(job.n_shards) if k % shard[1] == shard[0]]
    todo = [k for k in mine if shards.shard_name(k) not in done]
    n_todo_batches = sum(len(job.shard_batches(k)) for k in todo)
    cores = allowed_cores()
    workers = workers or len(cores)
    workers = max(1, min(workers, len(todo) or 1))
    images_per_shard = job.batches_per_shard * job.sweep_cfg.batch_size
    bar = tqdm(total=n_todo_batches, desc=f"render {job.sweep}", unit="batch", disable=not progress, file=sys.stderr)

    spans: list[tuple[float, float]] = []  # (start, end) of each shard's rendering, any worker

    def store(k: int, arrays: dict, span: tuple[float, float]) -> None:
        spans.append(span)
        name = shards.shard_name(k)
        digest = shards.write_shard(out_dir / name, arrays)
        batches = [job.shard_batches(k).start, job.shard_batches(k).stop]
        shards.atomic_write_json(_sidecar(out_dir, k), {"sha256": digest, "batches": batches, "config": config})
        done[name] = {"sha256": digest, "batches": batches}
        write_manifest(out_dir, job, config, done, versions)
        bar.update(len(job.shard_batches(k)))

    if todo and workers == 1:
        _init_worker(job)
        try:
            for k in todo:
                store(*_render_shard(k))
        finally:
            _W.pop("scene").close()
    elif todo:
        ctx = mp.get_context("spawn")  # a fresh interpreter per worker: bpy is not fork-safe
        pinnable = hasattr(os, "sched_setaffinity") and 1 < workers <= len(cores)
        pin = (ctx.Array("q", len(cores)), cores) if pinnable else ()
        with (
            _one_blas_thread(),
            ctx.Pool(
                workers, _init_pool_worker, (job, *pin), maxtasksperchild=max(1, restart_every // images_per_shard)
            ) as pool,
        ):
            for result in pool.imap_unordered(_render_shard, todo):
                store(*result)
    bar.close()
    write_manifest(out_dir, job, config, done, versions)
    summary = {
        "out": str(out_dir),
        "sweep": job.sweep,
        "rendered_shards": len(todo),
        "skipped_shards": len(mine) - len(todo),
        "repaired_shards": len([k for k in corrupt if k in todo]),
        "complete": len(done) == job.n_shards,
    }
    if spans:
        # From the first shard started to the last one finished: the rate without start-up.
        render_s = max(end for _, end in spans) - min(start for start, _ in spans)
        summary["seconds"] = round(time.perf_counter() - t_start, 3)
        summary["render_seconds"] = round(render_s, 3)
        summary["images_per_s"] = round(n_todo_batches * job.sweep_cfg.batch_size / render_s, 2)
    print(json.dumps(summary))
    return summary
