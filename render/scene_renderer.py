"""Any face at any angles, rendered on demand: :class:`Scene` and :class:`SceneRenderer`.

A sweep (:mod:`render.engine`) renders the batches a job describes; inverse graphics and the
explorer instead need single scenes that no job describes (a search's proposals, a slider's
angles). :class:`SceneRenderer` draws them with one persistent Blender scene (a
:class:`render.renderer.Renderer`). Importing this module does not import Blender; entering a
renderer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scene:
    """What a render shows: angles in degrees, coefficients in units of std (the searched leading ones)."""

    azimuth: float
    elevation: float
    light: float
    shape: tuple[float, ...] = ()
    albedo: tuple[float, ...] = ()

    def as_dict(self) -> dict:
        return {
            "azimuth": float(self.azimuth),
            "elevation": float(self.elevation),
            "light": float(self.light),
            "shape": [float(c) for c in self.shape],
            "albedo": [float(c) for c in self.albedo],
        }


class SceneRenderer:
    """Scenes -> (n, R, R) uint8 grey images for a face model, with one persistent Blender scene.

    Given coefficients fill the leading components; the others stay 0 (the mean). A mesh-folder
    model has no coefficients: its first mesh is shown and only the angles change.
    """

    def __init__(self, face_model, resolution: int, samples: int = 4, device: str = "cpu", threads: int = 1):
        from render.renderer import Renderer, SceneSettings

        self.face_model = face_model
        self.renderer = Renderer(SceneSettings(resolution, samples, device, threads))
        self.count = 0

    def __enter__(self) -> SceneRenderer:
        self.renderer.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.renderer.__exit__(*exc)

    def __call__(self, scenes: Sequence[Scene]) -> np.ndarray:
        m, n = self.face_model, len(scenes)
        shape = np.zeros((n, m.n_shape), np.float32)
        albedo = np.zeros((n, m.n_albedo), np.float32)
        for i, s in enumerate(scenes):
            k, j = min(len(s.shape), m.n_shape), min(len(s.albedo), m.n_albedo)
            shape[i, :k], albedo[i, :j] = s.shape[:k], s.albedo[:j]
        self.count += n
        return self.renderer.render_faces(
            m,
            shape,
            albedo,
            np.array([s.azimuth for s in scenes], np.float32),
            np.array([s.elevation for s in scenes], np.float32),
            np.array([s.light for s in scenes], np.float32),
            colour="grey",
        )
