"""``dcign-render``: render one-variable sweeps of faces into dataset shards.

    dcign-render --sweep azimuth --batches 4 --out data/azimuth
    dcign-render --params params.yaml --split train --sweep light --out data/train/light
    dcign-render preview --data data/train/azimuth --data data/train/light -o preview.png
    dcign-render preview --sweep azimuth --sweep light --batches 2 -o preview.png

A value given on the command line wins over the params file's (``--params``), which wins over
the defaults (those of the shipped params.yaml); see :func:`render.job.job_from_params`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from render.job import COLOURS, DEVICES, SPLITS, job_from_params
from render.params import ParamsError, load_params
from render.shards import MAX_SHARDS, ShardError
from render.stopping import stop_on_signals
from render.vocabulary import ALL_SWEEPS, EVAL_SWEEPS, SWEEPS


def _fail(message: str) -> None:
    raise click.ClickException(message)


def job_from_options(params_path, split: str, sweep: str, batches: int | None, options: dict):
    """The RenderJob of the command line: ``options`` over the params file (if given) over the defaults."""
    if not params_path and batches is None and sweep not in EVAL_SWEEPS:
        raise click.UsageError("--batches is required without --params")
    try:
        job = job_from_params(load_params(params_path) if params_path else None, sweep, split, batches, **options)
        job.validate()
    except ParamsError as e:
        raise e.as_click() from None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return job


def parse_shard_spec(spec: str | None) -> tuple[int, int]:
    """``--shard i/n``: this part ``i`` of ``n`` (0 <= i < n); no spec is the whole sweep, 0/1."""
    if spec is None:
        return 0, 1
    parts = spec.split("/")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"--shard must look like i/n with integers 0 <= i < n, got {spec!r:.40}")
    i, n = int(parts[0]), int(parts[1])
    if n <= 0 or i >= n:
        raise ValueError(f"--shard must look like i/n with integers 0 <= i < n, got {spec!r:.40}")
    if n > MAX_SHARDS:  # more parts than a sweep can have shards: every part past the last would be empty
        raise ValueError(f"n must be at most {MAX_SHARDS} (a sweep has at most that many shards), got {n}")
    return i, n


MAX_WORKERS = 256  # each worker is a Blender process of a few hundred MB, pinned to its own core
MAX_SHEET = 100  # rows and columns of a preview contact sheet: more is too large to look at (or to hold)


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


def _sheet_size(ctx, param, value):
    _positive(ctx, param, value)
    if value is not None and value > MAX_SHEET:
        raise click.BadParameter(f"must be at most {MAX_SHEET} (rows and columns of one contact sheet), got {value}")
    return value


def _seed(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter(f"must be a non-negative integer (numpy seeds are), got {value}")
    return value


common = [
    click.option("--params", "params_path", type=click.Path(dir_okay=False), help="params.yaml to read defaults from"),
    click.option(
        "--split",
        type=click.Choice(SPLITS),
        default="train",
        show_default=True,
        help="which batch counts (render.<split>_batches) and seed (the test split's is offset) to use",
    ),
    click.option(
        "--seed",
        type=int,
        callback=_seed,
        help="seed (default: the params file's, plus the test offset for --split test)",
    ),
    click.option("--resolution", type=int, callback=_positive, help="square image side in pixels"),
    click.option("--samples", type=int, callback=_positive, help="Cycles samples per pixel"),
    click.option("--batch-size", type=int, callback=_positive, help="images per batch"),
    click.option("--batches-per-shard", type=int, callback=_positive, help="batches stored per shard file"),
    click.option("--model", help="face model: 'default' or a path (.mat, .h5, .bin, .npz, mesh folder)"),
    click.option("--device", type=click.Choice(DEVICES), help="Cycles device"),
    click.option("--colour", type=click.Choice(COLOURS), help="store greyscale (paper) or RGB images"),
]


def with_common(f):
    for opt in reversed(common):
        f = opt(f)
    return f


@click.group(invoke_without_command=True)
@click.option(
    "--sweep",
    type=click.Choice(ALL_SWEEPS),
    help="the one variable that changes within each batch ('grid': the evaluation factor grid; "
    "'recognition': the recognition set, one face per batch at every recognition azimuth)",
)
@click.option("--batches", type=int, callback=_positive, help="number of batches to render")
@click.option("--out", type=click.Path(file_okay=False), help="output directory for shards and manifest")
@click.option("--workers", type=int, default=0, show_default=True, help="render processes (0 = one per core)")
@click.option("--shard", "shard_spec", help="render only part i of n (i/n), e.g. for a SLURM array job")
@click.option("--quiet", is_flag=True, help="no progress bar")
@with_common
@click.pass_context
def main(ctx, sweep, batches, out, workers, shard_spec, quiet, params_path, split, **overrides):
    """Render one-variable sweeps of faces with Blender (headless Cycles)."""
    if ctx.invoked_subcommand is not None:
        return
    if sweep is None:
        raise click.UsageError("--sweep is required (or use a subcommand such as 'preview')")
    if out is None:
        raise click.UsageError("--out is required")
    if not 0 <= workers <= MAX_WORKERS:
        reason = "each is a Blender process pinned to its own core"
        raise click.BadParameter(f"must be 0 to {MAX_WORKERS} ({reason}), got {workers}", param_hint="--workers")
    from render.engine import render_sweep
    from render.scene import RenderError

    try:
        shard = parse_shard_spec(shard_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--shard") from None
    job = job_from_options(params_path, split, sweep, batches, overrides)
    try:
        with stop_on_signals("dcign-render", "the shards written so far", defer=True):
            summary = render_sweep(job, Path(out), workers=workers, shard=shard, progress=not quiet)
    except (RenderError, ValueError) as e:  # ShardError, FaceModelError: a bad directory or face model
        _fail(str(e))
    except OSError as e:  # a disk full or a folder gone read-only mid-run: the shards written so far stay
        _fail(f"{e.filename or out}: cannot write ({e.strerror or e}); rerun to resume")
    click.echo(json.dumps(summary))


@main.command()
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="rendered sweep directories to show (one row per batch)",
)
@click.option("--sweep", "sweeps", multiple=True, type=click.Choice(SWEEPS), help="render fresh batches")
@click.option(
    "--batches",
    type=int,
    default=1,
    callback=_sheet_size,
    show_default=True,
    help="batches per sweep (or per --data directory)",
)
@click.option("--max-images", type=int, default=20, callback=_sheet_size, show_default=True, help="columns per row")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG contact sheet to write")
@with_common
def preview(data_dirs, sweeps, batches, max_images, output, params_path, split, **overrides):
    """Write a PNG contact sheet: one row per batch."""
    from render.preview import contact_sheet, write_png

    rows, labels = [], []
    if not data_dirs and not sweeps:
        raise click.UsageError("give --data DIR or --sweep NAME (either may repeat)")
    if data_dirs:
        from render.shards import load_sweep_dir

        for d in data_dirs:
            try:
                arrays = load_sweep_dir(Path(d))
            except ShardError as e:
                _fail(str(e))
            for b in range(min(batches, len(arrays["images"]))):
                rows.append(arrays["images"][b][:max_images])
                labels.append(f"{arrays['sweep'][b]} #{int(arrays['batch_index'][b])}")
    if sweeps:
        from render.renderer import Renderer
        from render.scene import RenderError

        for s in sweeps:
            job = job_from_options(params_path, split, s, batches, overrides)
            try:
                with Renderer(job) as renderer:
                    for b in range(batches):
                        rows.append(renderer.render_batch(b)["images"][:max_images])
                        labels.append(f"{s} #{b}")
            except (RenderError, ValueError) as e:  # a bad model or device: one line, not a traceback
                _fail(str(e))
    try:
        write_png(Path(output), contact_sheet(rows, labels))
    except OSError as e:
        _fail(f"{output}: cannot write ({e.strerror or e})")
    click.echo(f"wrote {output} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
