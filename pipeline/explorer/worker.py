"""The explorer's Blender: one persistent scene (:class:`render.scene_renderer.SceneRenderer`) in a
spawned worker process, so that Blender's single-threaded Python never runs inside the web
server's threads and a crash there leaves the server up.
"""

from __future__ import annotations

import contextlib

import numpy as np

from pipeline.explorer import ExploreError
from render.scene_renderer import Scene, SceneRenderer

RENDER_TIMEOUT = 120.0  # seconds before a render counts as lost (a dead worker never answers)

_scene_renderer: SceneRenderer | None = None  # inside the worker
_start_error = "the Blender worker did not start"


def _start_renderer(face_model: str, resolution: int, samples: int) -> None:
    global _scene_renderer, _start_error
    from multiprocessing.util import Finalize

    from render.faces.loaders import load_face_model

    try:
        r = SceneRenderer(load_face_model(face_model), resolution, samples, threads=1)
        _scene_renderer = r.__enter__()
    except Exception as e:  # noqa: BLE001 - reported with each render request instead of respawning forever
        _start_error = f"the Blender worker failed to start: {type(e).__name__}: {e}"
        return
    Finalize(_scene_renderer, _scene_renderer.__exit__, exitpriority=10)


def _render_in_worker(scenes: list[Scene]) -> np.ndarray:
    if _scene_renderer is None:
        raise RuntimeError(_start_error)
    return _scene_renderer(scenes)


class BlenderWorker:
    """One persistent Blender scene in a spawned process; ``render(scenes)`` -> (n, R, R) uint8."""

    def __init__(self, face_model: str, resolution: int, samples: int):
        self.args = (str(face_model), int(resolution), int(samples))
        self.resolution, self.samples = int(resolution), int(samples)
        self._stack = None
        self._pool = None

    def __enter__(self) -> BlenderWorker:
        from render.pool import worker_pool

        with contextlib.ExitStack() as stack:
            self._pool = stack.enter_context(worker_pool(1, _start_renderer, self.args))
            self._stack = stack.pop_all()
        self.render([Scene(0.0, 0.0, 0.0)])  # start Blender now, not at the first slider move
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack, self._pool = self._stack, None, None
        if stack is not None:  # normally the worker finishes and closes Blender; after an error it is ended
            stack.__exit__(*(exc or (None, None, None)))

    def render(self, scenes: list[Scene]) -> np.ndarray:
        import multiprocessing

        if self._pool is None:
            raise ExploreError("the Blender worker is not running")
        try:
            return self._pool.apply_async(_render_in_worker, (list(scenes),)).get(RENDER_TIMEOUT)
        except multiprocessing.TimeoutError:
            raise ExploreError(f"the Blender worker did not answer within {RENDER_TIMEOUT:g} s") from None
        except RuntimeError as e:
            raise ExploreError(str(e)) from None
