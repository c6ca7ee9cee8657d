"""The perspective camera that orbits the face."""

from __future__ import annotations

import math

import bpy

# Blender is Z-up; the face model's canonical frame (+Y up, +Z out of the face)
# is rotated so the face looks along -Y. A camera at azimuth 0, elevation 0
# sits on -Y looking at the face.
DISTANCE = 3.6  # orbit radius in canonical units (head radius 1): the head fills most of the frame
LENS_MM = 60.0  # 36 mm sensor: a field of view of about 33 degrees


def orbit_position(azimuth_deg: float, elevation_deg: float, distance: float) -> tuple[float, float, float]:
    """A point on the orbit sphere; +azimuth moves toward +X (the face's left)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (
        distance * math.sin(az) * math.cos(el),
        -distance * math.cos(az) * math.cos(el),
        distance * math.sin(el),
    )


def look_at_origin_euler(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """XYZ Euler angles that point a camera (or a sun's -Z) from the orbit point at the origin."""
    return (math.radians(90.0 - elevation_deg), 0.0, math.radians(azimuth_deg))


def create_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    data = bpy.data.cameras.new("camera")
    data.lens = LENS_MM
    data.sensor_width = 36.0
    data.clip_start, data.clip_end = 0.1, 20.0
    cam = bpy.data.objects.new("camera", data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def set_view(cam: bpy.types.Object, azimuth_deg: float, elevation_deg: float) -> None:
    cam.location = orbit_position(azimuth_deg, elevation_deg, DISTANCE)
    cam.rotation_euler = look_at_origin_euler(azimuth_deg, elevation_deg)
