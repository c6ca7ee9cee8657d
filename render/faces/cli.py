"""``dcign-faces``: inspect a face model and render a contact sheet of random identities.

    dcign-faces info PATH
    dcign-faces preview --model PATH_OR_default --n 16 -o sheet.png [--resolution 128] [--seed 0]

PATH is anything :func:`render.faces.loaders.load_face_model` accepts ("default"
for the embedded procedural head). A bad model file prints one line and exits
with status 2.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from render.faces.loaders import FaceModelError, load_face_model
from render.job import MAX_RESOLUTION, MAX_SAMPLES, MAX_SEED

MAX_SHEET = 100  # identities, and identities per row, of one contact sheet (larger is too large to look at)

PREVIEW_AZIMUTHS = (0.0, 45.0)  # frontal and three-quarter views
PREVIEW_LIGHT_DEG = 30.0  # light from the image's right of the camera: shading shows the shape


class ModelFileError(click.ClickException):
    """A bad face model: click prints ``Error: <file>: <problem>`` and exits with status 2."""

    exit_code = 2


def _load(path: str):
    try:
        return load_face_model(path)
    except FaceModelError as e:
        raise ModelFileError(str(e)) from None


@click.group()
def main() -> None:
    """Inspect face models and preview them with the project's Blender renderer."""


@main.command()
@click.argument("path")
def info(path: str) -> None:
    """Print vertex, triangle and component counts of the face model at PATH."""
    model = _load(path)
    click.echo(f"model:       {model.name}")
    if model.n_identities:
        n_v = [len(v) for v, _ in model.identities]
        n_f = [len(model.triangles_for(i)) for i in range(model.n_identities)]
        click.echo(f"identities:  {model.n_identities} meshes (no shape or albedo components)")
        click.echo(f"vertices:    {min(n_v)}..{max(n_v)} per mesh")
        click.echo(f"triangles:   {min(n_f)}..{max(n_f)} per mesh")
        return
    click.echo(f"vertices:    {model.n_vertices}")
    click.echo(f"triangles:   {len(model.triangles)}")
    click.echo(f"shape:       {model.n_shape} components")
    click.echo(f"albedo:      {model.n_albedo} components")
    if model.landmarks:
        click.echo(f"landmarks:   {', '.join(sorted(model.landmarks))}")
    if model.name == "procedural":
        from render.faces import procedural

        click.echo(f"shape components:  {', '.join(procedural.shape_component_names)}")
        click.echo(f"albedo components: {', '.join(procedural.albedo_component_names)}")


@main.command()
@click.option("--model", "model_path", default="default", show_default=True, help="Face model path or 'default'.")
@click.option(
    "--n", "n", type=click.IntRange(1, MAX_SHEET), default=16, show_default=True, help="Number of identities."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--resolution", type=click.IntRange(16, MAX_RESOLUTION), default=128, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="numpy seed (>= 0).")
@click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=32, show_default=True, help="Cycles samples.")
@click.option("--per-row", type=click.IntRange(1, MAX_SHEET), default=8, show_default=True, help="Identities per row.")
def preview(model_path: str, n: int, output: Path, resolution: int, seed: int, samples: int, per_row: int) -> None:
    """Render N random identities, frontal and at 45 degrees azimuth, into a contact sheet."""
    model = _load(model_path)
    rng = np.random.default_rng(seed)
    shape, albedo = model.sample(rng, n)
    identities = None
    if model.n_identities:
        identities = np.arange(n) % model.n_identities
    from render.preview import contact_sheet, write_png
    from render.renderer import Renderer, SceneSettings

    views = len(PREVIEW_AZIMUTHS)
    with Renderer(SceneSettings(resolution, samples)) as renderer:
        images = renderer.render_faces(
            model,
            np.repeat(shape, views, axis=0),
            np.repeat(albedo, views, axis=0),
            np.tile(PREVIEW_AZIMUTHS, n),
            np.zeros(n * views),
            np.full(n * views, PREVIEW_LIGHT_DEG),
            identities=None if identities is None else np.repeat(identities, views),
        ).reshape(n, views, resolution, resolution, 3)
    rows, labels = [], []
    for start in range(0, n, per_row):
        chunk = images[start : start + per_row]
        for v, az in enumerate(PREVIEW_AZIMUTHS):
            rows.append(chunk[:, v])
            labels.append(f"{start + 1}-{start + len(chunk)} az {az:g}")
    write_png(output, contact_sheet(rows, labels))
    click.echo(f"wrote {output} ({n} identities of {model.name})")


if __name__ == "__main__":
    main()
