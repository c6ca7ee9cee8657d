"""``dcign-render``: render one-variable sweeps of faces into dataset shards.

    dcign-render --sweep azimuth --batches 4 --out data/azimuth
    dcign-render --params params.yaml --split train --sweep light --out data/train/light
    dcign-render preview --data data/train/azimuth --data data/train/light -o preview.png
    dcign-render preview --sweep azimuth --sweep light --batches 2 -o preview.png

Options given on the command line override the ``render:`` section of a params file.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.params import ParamsError, get, get_range, load_params
from render.shards import ALL_SWEEPS, EVAL_SWEEPS, GRID, RECOGNITION, SWEEPS, ShardError
from render.sweeps import SweepConfig

GRID_KEYS = ("identities", "azimuths", "elevations", "lights")
RECOGNITION_KEYS = ("identities", "azimuths")


def _fail(message: str) -> None:
    raise click.ClickException(message)


OVERRIDES = ("seed", "resolution", "samples", "batch_size", "batches_per_shard", "model", "device", "colour")


def job_from_options(params_path, split: str, sweep: str, batches: int | None, o: dict):
    """Build a RenderJob from params.yaml (if given), overridden by command-line options ``o``."""
    from render.engine import RenderJob
    from render.sweeps import grid_batches

    p = load_params(params_path) if params_path else {}
    defaults = RenderJob(sweep=sweep, n_batches=1)  # what applies without params.yaml

    def pick(key, dotted, kind, default, **kw):
        # Command line first, then params.yaml, then the built-in default.
        if o.get(key) is not None:
            return o[key]
        return get(p, dotted, kind, **kw) if p and default is None else get(p, dotted, kind, default=default, **kw)

    if sweep in EVAL_SWEEPS and not p:
        raise click.UsageError(f"--sweep {sweep} needs --params (its sizes are evaluate.{sweep} in params.yaml)")
    if not p and batches is None:
        raise click.UsageError("--batches is required without --params")
    ranges = {n: get_range(p, f"render.ranges.{n}") if p else SweepConfig().ranges[n] for n in SweepConfig().ranges}
    seed = o.get("seed")
    if seed is None:
        seed = get(p, "seed", int) if p else 0
        if p and split == "test":
            seed += get(p, "render.test_seed_offset", int, positive=True)
    grid = tuple(get(p, f"evaluate.grid.{k}", int, positive=True) for k in GRID_KEYS) if sweep == GRID else None
    recog = None
    if sweep == RECOGNITION:
        recog = tuple(get(p, f"evaluate.recognition.{k}", int, positive=True) for k in RECOGNITION_KEYS)
    default_b = None if p else defaults.sweep_cfg.batch_size
    if grid or recog:  # one batch holds every azimuth of one face
        batch_size = grid[1] if grid else recog[1]
    else:
        batch_size = pick("batch_size", "render.batch_size", int, default_b, positive=True)
    sweep_cfg = SweepConfig(
        batch_size=batch_size,
        ranges=ranges,
        fixed_fraction=get(p, "render.fixed_fraction", float, default=1.0) if p else 1.0,
        **({"grid": grid} if grid else {}),
        **({"recognition": recog} if recog else {}),
    )
    if batches is None:
        if grid:
            batches = grid_batches(sweep_cfg)
        elif recog:
            batches = recog[0]
        else:
            batches = get(p, f"render.{split}_batches.{sweep}", int, positive=True)
    default_bps = None if p else defaults.batches_per_shard
    job = RenderJob(
        sweep=sweep,
        n_batches=batches,
        seed=seed,
        resolution=pick("resolution", "render.resolution", int, None if p else defaults.resolution, positive=True),
        samples=pick("samples", "render.samples", int, None if p else defaults.samples, positive=True),
        batches_per_shard=pick("batches_per_shard", "render.batches_per_shard", int, default_bps, positive=True),
        model=str(pick("model", "render.model", str, "default")),
        colour=pick("colour", "render.colour", str, "grey", choices=("grey", "rgb")),
        device=pick("device", "render.device", str, "cpu", choices=("cpu", "cuda", "optix")),
        sweep_cfg=sweep_cfg,
    )
    try:
        job.validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return job


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


common = [
    click.option("--params", "params_path", type=click.Path(dir_okay=False), help="params.yaml to read defaults from"),
    click.option(
        "--split",
        type=click.Choice(["train", "test"]),
        default="train",
        show_default=True,
        help="with --params: which batch counts and seed to use",
    ),
    click.option("--seed", type=int, help="seed (default: params seed, else 0)"),
    click.option("--resolution", type=int, callback=_positive, help="square image side in pixels"),
    click.option("--samples", type=int, callback=_positive, help="Cycles samples per pixel"),
    click.option("--batch-size", type=int, callback=_positive, help="images per batch"),
    click.option("--batches-per-shard", type=int, callback=_positive, help="batches stored per shard file"),
    click.option("--model", help="face model: 'default' or a path (.mat, .h5, .bin, .npz, mesh folder)"),
    click.option("--device", type=click.Choice(["cpu", "cuda", "optix"]), help="Cycles device"),
    click.option("--colour", type=click.Choice(["grey", "rgb"]), help="store greyscale (paper) or RGB images"),
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
    if workers < 0:
        raise click.BadParameter(f"must be >= 0, got {workers}", param_hint="--workers")
    from render.engine import parse_shard_spec, render_sweep
    from render.faces.loaders import FaceModelError
    from render.scene import RenderError

    try:
        shard = parse_shard_spec(shard_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--shard") from None
    job = job_from_options(params_path, split, sweep, batches, overrides)
    try:
        render_sweep(job, Path(out), workers=workers, shard=shard, progress=not quiet)
    except (ShardError, FaceModelError, RenderError, ParamsError, ValueError) as e:
        _fail(str(e))


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
    callback=_positive,
    show_default=True,
    help="batches per sweep (or per --data directory)",
)
@click.option("--max-images", type=int, default=20, callback=_positive, show_default=True, help="columns per row")
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
        from render.engine import _W, _init_worker, render_batch

        for s in sweeps:
            job = job_from_options(params_path, split, s, batches, overrides)
            try:
                _init_worker(job)
            except Exception as e:  # a bad model or device: one line, not a traceback
                _fail(str(e))
            for b in range(batches):
                rows.append(render_batch(_W["scene"], _W["model"], job, b)["images"][:max_images])
                labels.append(f"{s} #{b}")
            _W.pop("scene").close()
    try:
        write_png(Path(output), contact_sheet(rows, labels))
    except OSError as e:
        _fail(f"{output}: cannot write ({e.strerror or e})")
    click.echo(f"wrote {output} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
