"""One directional light, placed in the camera's frame, plus a dim uniform world."""

from __future__ import annotations

import bpy

from render.camera import look_at_origin_euler

LIGHT_ELEVATION_DEG = 15.0  # the light sits slightly above the camera's horizon
SUN_STRENGTH = 3.5  # irradiance (W/m^2); with the world's fill this keeps faces out of clipping
WORLD_GREY = 0.06  # background colour and ambient fill: unlit sides stay visible


def create_world(scene: bpy.types.Scene, grey: float = WORLD_GREY) -> None:
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (grey, grey, grey, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    scene.world = world


def create_light(scene: bpy.types.Scene) -> bpy.types.Object:
    data = bpy.data.lights.new("sun", "SUN")
    data.energy = SUN_STRENGTH
    data.angle = 0.05  # a slightly soft shadow edge
    sun = bpy.data.objects.new("sun", data)
    scene.collection.objects.link(sun)
    return sun


def set_light(sun: bpy.types.Object, light_deg: float, camera_azimuth_deg: float, camera_elevation_deg: float) -> None:
    """Light azimuth is measured in the camera's frame: 0 = from the camera, + = from the image's right."""
    sun.rotation_euler = look_at_origin_euler(
        camera_azimuth_deg + light_deg, camera_elevation_deg + LIGHT_ELEVATION_DEG
    )
