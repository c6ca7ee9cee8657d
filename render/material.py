"""Skin material: per-vertex albedo from a colour attribute into a Principled BSDF."""

from __future__ import annotations

import bpy

COLOR_ATTRIBUTE = "albedo"


def create_skin_material() -> bpy.types.Material:
    mat = bpy.data.materials.new("skin")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_name = COLOR_ATTRIBUTE
    links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    # A little specular sheen makes curvature readable; subsurface would cost samples.
    bsdf.inputs["Specular IOR Level"].default_value = 0.3
    return mat
