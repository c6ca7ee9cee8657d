"""Surrey Face Model / eos (``.bin``): ``MorphableModel`` as eos's ``save_model`` writes it.

A cereal binary archive, class versions 1-4, read by a small pure-Python parser (no eos needed):
shape and colour ``PcaModel`` (mean, orthonormal basis, eigenvalues = variances, triangle list)
and landmark definitions when present. Expression models are skipped. A shape-only model gets a
uniform skin colour and no albedo components.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from render.faces.canonical import colour_scale, fail, note, pca_model
from render.faces.model import MorphableModel


class _Reader:
    """Little-endian reader over cereal's BinaryOutputArchive layout."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise fail(self.path, f"truncated eos model file (needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def i32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8", errors="replace")

    def eigen(self) -> np.ndarray:
        """Eigen matrix: int32 rows, int32 cols, then float32 data in column-major order."""
        rows, cols = self.i32(), self.i32()
        if rows < 0 or cols < 0:
            raise fail(self.path, f"bad matrix size {rows} x {cols} at offset {self.pos - 8}")
        flat = np.frombuffer(self.take(4 * rows * cols), dtype="<f4")
        return flat.reshape(cols, rows).T.astype(np.float64)

    def triangles(self) -> np.ndarray:
        n = self.u64()
        return np.frombuffer(self.take(12 * n), dtype="<i4").reshape(n, 3).astype(np.int64)

    def pca_model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """eos PcaModel: mean, orthonormal basis, eigenvalues (variances), triangle list."""
        mean, basis, eigenvalues = self.eigen(), self.eigen(), self.eigen()
        return mean.reshape(-1), basis, eigenvalues.reshape(-1), self.triangles()


def load(path: Path) -> MorphableModel:
    r = _Reader(path, path.read_bytes())
    version = r.u32()
    if version == 0 or version > 4:
        raise fail(
            path,
            f"unsupported eos model version {version} (expected 1 to 4; version 0 is eos's old OpenCV-matrix format)",
        )
    s_mean, s_basis, s_eig, tris = r.pca_model()
    c_mean, c_basis, c_eig, _ = r.pca_model()
    landmarks: dict[str, int] = {}
    if version >= 2:
        if r.u8() == 0:  # optional holds a value (cereal writes "nullopt" = true when empty)
            kind = r.i32()  # variant index: 0 PcaModel, 1 Blendshapes
            if kind == 0:
                r.pca_model()
            elif kind == 1:
                for _ in range(r.u64()):
                    r.string()
                    r.eigen()
            else:
                raise fail(path, f"unknown eos expression model type {kind}")
    if version >= 3 and r.u8() == 0:
        for _ in range(r.u64()):
            key = r.string()
            landmarks[key] = r.i32()
    if s_mean.size == 0:
        raise fail(path, "the eos model has an empty shape model")
    if s_basis.shape[0] != s_mean.size:
        raise fail(path, f"shape basis has {s_basis.shape[0]} rows but the mean has {s_mean.size} values")
    for what, v in (("shape eigenvalues", s_eig), ("colour eigenvalues", c_eig)):
        if np.any(v < 0):
            raise fail(path, f"{what} are negative")
    has_colour = c_mean.size > 0
    if not has_colour and (c_basis.size or c_eig.size):
        raise fail(path, "the colour model has a basis or eigenvalues but no mean")
    n_v = s_mean.size // 3
    dropped = sorted(k for k, v in landmarks.items() if not 0 <= v < n_v)
    if dropped:
        note(path, f"{len(dropped)} landmarks name no vertex of {n_v} and are left out (first: {dropped[0]!r:.40})")
    landmarks = {k: v for k, v in landmarks.items() if k not in dropped}
    return pca_model(
        path,
        s_mean,
        s_basis,
        np.sqrt(s_eig),
        tris,
        c_mean if has_colour else None,
        c_basis if has_colour else None,
        np.sqrt(c_eig) if has_colour else None,
        colour_range=colour_scale(c_mean) if has_colour else 1.0,
        landmarks=landmarks,
    )
