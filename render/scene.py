"""One persistent Blender scene per process: a face mesh, an orbiting camera, one light.

The scene is built once; each image changes only what it must (camera and light
transforms, and vertex positions/colours when the face changes), so Cycles'
persistent data can reuse its BVH and shaders between renders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import bpy
import cv2
import numpy as np

from render import camera, lighting, material
from render.atomic import claim_blender_session, remove_orphaned_scratch, scratch_prefix
from render.job import DEVICES

SCRATCH_NAME = "dcign-render"  # /dev/shm/dcign-render-<pid>-*: the frame each render writes


@contextlib.contextmanager
def silenced_stdout():
    """Blender prints two lines per render to fd 1; keep them out of logs and pipes."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class RenderError(RuntimeError):
    """The renderer could not be set up as asked (e.g. no GPU of the requested kind)."""


def configure_cycles(scene: bpy.types.Scene, resolution: int, samples: int, threads: int, device: str) -> None:
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.use_persistent_data = True
    scene.render.film_transparent = False
    scene.render.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        scene.render.threads = threads
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.image_settings.compression = 0
    # 'Standard' maps linear to sRGB without a filmic curve: pixel values stay interpretable.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    cycles = scene.cycles
    cycles.samples = samples
    cycles.use_adaptive_sampling = False  # fixed sample count: identical noise for identical inputs
    cycles.use_denoising = False  # denoising made small renders ~5x slower here
    cycles.use_light_tree = False  # one light: the tree only adds work
    cycles.seed = 0
    cycles.max_bounces = 2
    cycles.diffuse_bounces = 1
    cycles.glossy_bounces = 1
    cycles.transmission_bounces = 0
    cycles.volume_bounces = 0
    cycles.transparent_max_bounces = 0
    cycles.pixel_filter_width = 1.0
    _select_device(scene, device)


def _select_device(scene: bpy.types.Scene, device: str) -> None:
    if device not in DEVICES:
        raise RenderError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        scene.cycles.device = "CPU"
        return
    prefs = bpy.context.preferences.addons["cycles"].preferences
    kind = device.upper()
    try:
        prefs.compute_device_type = kind
    except TypeError:
        raise RenderError(f"--device {device}: this Blender build has no {kind} support") from None
    prefs.get_devices()
    gpus = [d for d in prefs.devices if d.type == kind]
    if not gpus:
        raise RenderError(f"--device {device}: no {kind} device found on this machine")
    for d in prefs.devices:
        d.use = d.type == kind
    scene.cycles.device = "GPU"


class FaceScene:
    """A headless Cycles scene holding one face; ``render_image`` returns uint8 pixels."""

    def __init__(self, resolution: int, samples: int = 16, threads: int = 1, device: str = "cpu"):
        if resolution <= 0 or samples <= 0:
            raise RenderError(f"resolution and samples must be positive, got {resolution} and {samples}")
        bpy.ops.wm.read_factory_settings(use_empty=True)
        claim_blender_session(bpy.app.tempdir)  # the reset made Blender a new session folder
        self.scene = bpy.context.scene
        configure_cycles(self.scene, resolution, samples, threads, device)
        self.resolution = resolution
        self.camera = camera.create_camera(self.scene)
        self.sun = lighting.create_light(self.scene)
        lighting.create_world(self.scene)
        self.material = material.create_skin_material()
        self.face: bpy.types.Object | None = None
        self._n_vertices = -1
        self._triangles_id: int | None = None
        self._vertices: np.ndarray | None = None  # the face on show, to skip redundant updates
        self._colours: np.ndarray | None = None
        # Blender 4.5 cannot hand rendered pixels to Python in background mode (the
        # Viewer node is not updated), so each image goes through an uncompressed
        # PNG in a RAM-backed directory that is reused for every render.
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() else Path(tempfile.gettempdir())
        remove_orphaned_scratch(parent, SCRATCH_NAME)  # those of killed renderers: RAM until reboot otherwise
        self._tmpdir = tempfile.mkdtemp(prefix=scratch_prefix(SCRATCH_NAME), dir=parent)
        self._frame_path = os.path.join(self._tmpdir, "frame.png")
        self.scene.render.filepath = self._frame_path

    # --- face mesh -------------------------------------------------------------------------
    def _build_mesh(self, vertices: np.ndarray, triangles: np.ndarray) -> None:
        if self.face is not None:
            old = self.face.data
            bpy.data.objects.remove(self.face)
            bpy.data.meshes.remove(old)
        mesh = bpy.data.meshes.new("face")
        mesh.vertices.add(len(vertices))
        mesh.loops.add(3 * len(triangles))
        mesh.polygons.add(len(triangles))
        mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
        mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32).ravel())
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(triangles), 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(triangles), 3, dtype=np.int32))
        mesh.update()
        mesh.validate()
        mesh.shade_smooth()
        mesh.color_attributes.new(material.COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
        mesh.materials.append(self.material)
        obj = bpy.data.objects.new("face", mesh)
        # Canonical (+Y up, +Z forward) -> Blender (+Z up, face looking along -Y).
        obj.rotation_euler = (np.pi / 2, 0.0, 0.0)
        self.scene.collection.objects.link(obj)
        self.face = obj
        self._n_vertices = len(vertices)

    def set_face(self, vertices: np.ndarray, colours: np.ndarray, triangles: np.ndarray) -> None:
        """Show a face: (V, 3) canonical vertices, (V, 3) linear RGB albedo, (F, 3) triangles.

        Nothing is touched when the face is the one already shown: pose and light
        sweeps then keep Cycles' BVH and only move the camera and the light.
        """
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        colours = np.ascontiguousarray(colours, dtype=np.float32)
        new_topology = self.face is None or len(vertices) != self._n_vertices or id(triangles) != self._triangles_id
        if new_topology:
            self._build_mesh(vertices, triangles)
            self._triangles_id = id(triangles)
        elif np.array_equal(vertices, self._vertices) and np.array_equal(colours, self._colours):
            return
        mesh = self.face.data
        if new_topology or not np.array_equal(vertices, self._vertices):
            mesh.vertices.foreach_set("co", vertices.ravel())
        rgba = np.concatenate([colours, np.ones((len(colours), 1), np.float32)], axis=1)
        mesh.color_attributes[material.COLOR_ATTRIBUTE].data.foreach_set("color", rgba.ravel())
        mesh.update()
        self._vertices, self._colours = vertices, colours

    # --- view and light --------------------------------------------------------------------
    def set_pose(self, azimuth_deg: float, elevation_deg: float, light_deg: float) -> None:
        camera.set_view(self.camera, azimuth_deg, elevation_deg)
        lighting.set_light(self.sun, light_deg, azimuth_deg, elevation_deg)

    # --- render ----------------------------------------------------------------------------
    def render_image(self) -> np.ndarray:
        """Render the current state; return (R, R, 3) uint8 sRGB."""
        with silenced_stdout():
            bpy.ops.render.render(write_still=True)
        bgr = cv2.imread(self._frame_path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise RenderError(f"Blender wrote no readable image to {self._frame_path}")
        return bgr[:, :, ::-1].copy()

    def close(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)
