"""The morphable face model type that the renderer consumes.

Every face source (the embedded procedural model, BFM 2009/2017, Surrey/eos,
a folder of meshes, the project's own ``.npz``) is converted to this one type.

Canonical frame (all sources): centred at the origin, +Y up, +Z out of the face
(the nose points to +Z), right-handed, scaled so the mean shape's vertices lie
within a unit sphere (max radius 1). Triangles are wound counter-clockwise seen
from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class FaceModelError(ValueError):
    """A face model file is missing, of unknown type, or malformed; the message names the file."""


@dataclass
class MorphableModel:
    """A linear (PCA) model of shape and albedo over one mesh topology."""

    shape_mean: np.ndarray  # (V, 3) float32, canonical frame
    shape_basis: np.ndarray  # (Ks, V, 3) float32, unit-norm directions (orthonormal for PCA sources)
    shape_std: np.ndarray  # (Ks,) float32, standard deviation per component
    albedo_mean: np.ndarray  # (V, 3) float32, linear RGB in [0, 1]
    albedo_basis: np.ndarray  # (Ka, V, 3) float32
    albedo_std: np.ndarray  # (Ka,) float32
    triangles: np.ndarray  # (F, 3) int32, CCW from outside
    name: str = "model"  # where it came from, for manifests
    landmarks: dict[str, int] = field(default_factory=dict)  # name -> vertex index
    # A mesh folder has no correspondence: each identity is its own mesh.
    # When set, ``identities`` holds (vertices, colours) per identity and the
    # bases are empty; sampling picks an identity index instead of coefficients.
    identities: list[tuple[np.ndarray, np.ndarray]] | None = None
    # Triangles (F_i, 3) of each identity, parallel to ``identities``; see ``triangles_for``.
    identity_triangles: list[np.ndarray] | None = None

    @property
    def n_vertices(self) -> int:
        return int(self.shape_mean.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shape_std.shape[0])

    @property
    def n_albedo(self) -> int:
        return int(self.albedo_std.shape[0])

    @property
    def n_identities(self) -> int | None:
        """Number of meshes of a mesh-folder model; None for coefficient (PCA) models."""
        return None if self.identities is None else len(self.identities)

    def triangles_for(self, identity: int | None = None) -> np.ndarray:
        """Triangles of one identity's mesh (mesh folders); ``self.triangles`` for PCA models or None."""
        if self.identities is None or identity is None:
            return self.triangles
        if self.identity_triangles is None:
            return self.triangles
        return self.identity_triangles[self._identity_index(identity)]

    def _identity_index(self, identity: int) -> int:
        n = len(self.identities or ())
        i = int(identity)
        if not 0 <= i < n:
            raise IndexError(f"identity {i} out of range for a model with {n} identities")
        return i

    def sample(self, rng: np.random.Generator, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` (shape, albedo) coefficient vectors in units of std (N(0, 1))."""
        shape = rng.standard_normal((n, self.n_shape)).astype(np.float32)
        albedo = rng.standard_normal((n, self.n_albedo)).astype(np.float32)
        return shape, albedo

    def instance(
        self, shape_coeffs: np.ndarray, albedo_coeffs: np.ndarray, identity: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Build one face: (vertices (V, 3), colours (V, 3) in [0, 1]).

        Coefficients are in units of each component's standard deviation.
        For a mesh-folder model, ``identity`` picks the mesh (its own vertex count;
        draw it with ``triangles_for(identity)``) and the coefficients, which
        have length 0, are ignored. Without ``identity`` such a model gives mesh 0.
        """
        if self.identities is not None and identity is not None:
            verts, cols = self.identities[self._identity_index(identity)]
            return np.asarray(verts, np.float32).copy(), np.clip(cols, 0.0, 1.0).astype(np.float32)
        shape_coeffs = np.asarray(shape_coeffs, dtype=np.float32)
        albedo_coeffs = np.asarray(albedo_coeffs, dtype=np.float32)
        verts = self.shape_mean + np.tensordot(shape_coeffs * self.shape_std, self.shape_basis, axes=1)
        cols = self.albedo_mean + np.tensordot(albedo_coeffs * self.albedo_std, self.albedo_basis, axes=1)
        return verts.astype(np.float32), np.clip(cols, 0.0, 1.0).astype(np.float32)
