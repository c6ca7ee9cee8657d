"""Rendering: Blender (bpy, headless Cycles) renders one-variable sweeps over faces.

Importing this package does not import bpy; only ``render.scene`` and the
modules it uses do, so the dataset reader (``render.shards``) stays light.
"""
