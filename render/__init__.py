"""Rendering: Blender (bpy, headless Cycles) renders one-variable sweeps over faces.

The bottom of the project: ``render.params`` (the params.yaml reader), ``render.vocabulary``,
``render.atomic`` and ``render.shards`` (the dataset format) are what ``dcign`` and ``pipeline``
import. Importing this package does not import bpy; only ``render.scene`` and the modules it uses
do, so those stay light.
"""
