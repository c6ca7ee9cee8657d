"""The renderer: faces and render batches as pixels, in this process or in a pool of worker processes.

``with Renderer(job) as r:`` holds one persistent Blender scene in this process;
``r.render_batch(b)`` gives render batch ``b`` of the job, ``r.render_faces(...)`` any faces.
``with Renderer(job, workers=4) as r:`` holds a pool of pinned worker processes (see
:mod:`render.pool`), each with its own scene; ``r.render_shards(ks)`` yields shards as they finish.
Every image goes through one loop, :meth:`Renderer._render`. Importing this module does not
import Blender; entering a renderer in this process does.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np

from render.faces.loaders import load_face_model
from render.job import DEVICES, RenderJob
from render.pool import worker_pool
from render.shards import ShardError
from render.sweeps import batch_factors
from render.vocabulary import GREY_WEIGHTS


@dataclass(frozen=True)
class SceneSettings:
    """How the scene renders, for faces that no job describes."""

    resolution: int = 64  # square image side, pixels
    samples: int = 4  # Cycles samples per pixel
    device: str = "cpu"  # one of DEVICES
    threads: int = 0  # Cycles render threads; 0: one per core


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) uint8 RGB -> (…) uint8 grey with the paper's weights."""
    grey = rgb.astype(np.float32) @ GREY_WEIGHTS
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


class Renderer:
    """Renders a :class:`RenderJob` (or faces with :class:`SceneSettings`); a context manager.

    ``workers`` 1 renders in this process. More starts a pool of that many processes (a job
    only), restarted after about ``restart_every`` images each so Blender's memory stays flat.
    A job renders with one Cycles thread per process, so its pixels do not depend on how many
    workers there are.
    """

    def __init__(self, what: RenderJob | SceneSettings, workers: int = 1, restart_every: int = 2000):
        if isinstance(what, RenderJob):
            self.job: RenderJob | None = what
            self.settings = SceneSettings(what.resolution, what.samples, what.device, threads=1)
        else:
            self.job, self.settings = None, what
        if self.settings.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.settings.device!r}")
        if workers < 1 or (workers > 1 and self.job is None):
            raise ValueError(f"workers must be 1, or more for a render job; got {workers}")
        self.workers, self.restart_every = workers, restart_every
        self._stack: contextlib.ExitStack | None = None
        self._scene = self._model = self._pool = None

    def __enter__(self) -> Renderer:
        with contextlib.ExitStack() as stack:
            if self.workers == 1:
                from render.scene import FaceScene

                if self.job is not None:
                    self._model = load_face_model(self.job.model, quiet=True)  # its caller loaded it first, not quiet
                s = self.settings
                self._scene = FaceScene(s.resolution, s.samples, threads=s.threads, device=s.device)
                stack.callback(self._scene.close)
            else:
                images_per_shard = self.job.batches_per_shard * self.job.sweep_cfg.batch_size
                retire = max(1, self.restart_every // images_per_shard)
                self._pool = stack.enter_context(worker_pool(self.workers, _start_worker, (self.job,), retire))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        self._scene = self._model = self._pool = None
        if stack is not None:
            stack.close()

    # --- in this process ----------------------------------------------------------------------
    def render_faces(
        self, model, shape, albedo, azimuth, elevation, light, identities=None, colour: str = "rgb"
    ) -> np.ndarray:
        """n faces of ``model`` at the given angles (degrees): (n, R, R, 3) uint8 RGB, or (n, R, R) grey.

        ``shape``/``albedo``: (n, K) coefficients in units of std; ``identities`` picks the mesh of
        each face for a mesh-folder model.
        """
        factors = {"shape": shape, "albedo": albedo, "azimuth": azimuth, "elevation": elevation, "light": light}
        if identities is not None:
            factors["identity"] = identities
        return self._render(model, factors, colour)

    def render_batch(self, batch_index: int) -> dict[str, np.ndarray]:
        """Render batch ``batch_index`` of the job: its factors and its ``images``."""
        job = self._need_job()
        f = batch_factors(
            job.seed,
            job.sweep,
            batch_index,
            job.sweep_cfg,
            self._model.n_shape,
            self._model.n_albedo,
            self._model.n_identities,
        )
        f["images"] = self._render(self._model, f, job.colour)
        return f

    def render_shard(self, k: int) -> tuple[int, dict[str, np.ndarray], tuple[float, float]]:
        """Shard ``k``'s arrays, and when its rendering started and finished (wall clock)."""
        job = self._need_job()
        started = time.time()
        batches = [self.render_batch(b) for b in job.shard_batches(k)]
        arrays = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
        arrays["batch_index"] = np.array(list(job.shard_batches(k)), dtype=np.int64)
        arrays["sweep"] = np.array(job.sweep)
        return k, arrays, (started, time.time())

    # --- in this process or the pool ----------------------------------------------------------
    def render_shards(self, ks):
        """Yield :meth:`render_shard` of each of ``ks``: in order here, as they finish in a pool."""
        if self._pool is not None:
            yield from self._pool.imap_unordered(_render_shard_in_worker, ks)
        else:
            for k in ks:
                yield self.render_shard(k)

    # --- the one render loop ------------------------------------------------------------------
    def _render(self, model, f: dict, colour: str) -> np.ndarray:
        """Render every image of ``f`` (per-image shape, albedo, azimuth, elevation, light, identity).

        Faces are built with one BLAS thread: a face is ``mean + basis @ coefficients``, and a
        multi-threaded BLAS sums that product in another order, which can change a pixel by a
        grey level, so the bytes would depend on the worker count and on the cores allowed.
        """
        from threadpoolctl import threadpool_limits

        if self._scene is None:
            raise RuntimeError("render faces inside `with Renderer(...)`, with one worker")
        mesh_folder = bool(model.n_identities) and "identity" in f
        images = []
        with threadpool_limits(limits=1, user_api="blas"):
            for i in range(len(f["azimuth"])):
                identity = int(f["identity"][i]) if mesh_folder else None
                vertices, colours = model.instance(f["shape"][i], f["albedo"][i], identity=identity)
                self._scene.set_face(vertices, colours, model.triangles_for(identity))
                self._scene.set_pose(float(f["azimuth"][i]), float(f["elevation"][i]), float(f["light"][i]))
                rgb = self._scene.render_image()
                images.append(rgb_to_grey(rgb) if colour == "grey" else rgb)
        return np.stack(images)

    def _need_job(self) -> RenderJob:
        if self.job is None or self._model is None:
            raise RuntimeError("render batches inside `with Renderer(job)`, with one worker")
        return self.job


# --- inside a pool worker -------------------------------------------------------------------------
_worker: Renderer | None = None
_worker_error = "render worker did not start"


def _start_worker(job: RenderJob) -> None:
    """Each worker renders with its own in-process renderer, closed when the worker retires."""
    global _worker, _worker_error
    from multiprocessing.util import Finalize

    try:
        _worker = Renderer(job).__enter__()
    except Exception as e:  # a failing initializer would make the pool respawn workers forever
        _worker_error = f"render worker failed to start: {type(e).__name__}: {e}"
        return
    Finalize(_worker, _worker.__exit__, exitpriority=10)


def _render_shard_in_worker(k: int):
    if _worker is None:
        raise ShardError(_worker_error)
    return _worker.render_shard(k)
