"""``dcign-train``: train a DC-IGN (or, with ``--set method=vae`` etc., a baseline) from params.yaml.

Single process: ``dcign-train --params params.yaml --data DIR [--data DIR ...] --out DIR``.
Several processes: ``torchrun --nproc_per_node N -m dcign.cli ...`` (DDP is used when WORLD_SIZE > 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from dcign.checkpoint import CheckpointError
from dcign.config import ConfigError, load_config
from render.params import ParamsError
from render.shards import ShardError
from render.stopping import stop_on_signals


def _check_distinct(data_dirs) -> None:
    """Each sweep directory once: a repeated one would put every one of its batches in the schedule twice."""
    seen: dict[Path, Path] = {}
    for d in data_dirs:
        key = Path(d).resolve()
        if key in seen:
            same = "twice" if str(seen[key]) == str(d) else f"twice (also as {seen[key]})"
            raise click.BadParameter(f"{d} is given {same}; each sweep directory trains once", param_hint="--data")
        seen[key] = Path(d)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml",
    show_default=True,
    help="YAML with a top-level seed and a train: section.",
)
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Rendered sweep directory (repeat for each sweep).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Checkpoint directory (model.safetensors, model.json, optimizer.pt).",
)
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (start fresh when there is none).")
@click.option(
    "--live-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="dvclive directory for the loss curves and summary.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a train parameter (e.g. --set steps=100, --set method=beta_vae for a baseline).",
)
@click.option("--progress/--no-progress", default=True, help="Show a tqdm progress bar.")
def main(params_path, data_dirs, out_dir, resume, live_dir, overrides, progress):
    """Train a DC-IGN on rendered face sweeps."""
    _check_distinct(data_dirs)
    try:
        cfg = load_config(params_path, tuple(overrides))
    except ParamsError as e:
        raise e.as_click() from None
    from dcign.train import TrainError, train

    try:
        with stop_on_signals("dcign-train", "the checkpoints written so far"):
            summary = train(cfg, list(data_dirs), out_dir, resume=resume, live_dir=live_dir, progress=progress)
    except (TrainError, ConfigError, CheckpointError, ShardError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # a disk full or a folder gone read-only: the last checkpoint stays, --resume continues
        raise click.ClickException(f"{e.filename or out_dir}: cannot write ({e.strerror or e})") from None
    click.echo(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
