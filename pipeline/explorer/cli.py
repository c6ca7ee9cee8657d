"""``dcign-explore``: the interactive explorer in the browser (needs the ``explore`` extra).

``dcign-explore``                                   (models/dcign, models/baseline, data/test)
``dcign-explore --checkpoint models/dcign --port 7861``

Loads the checkpoint and its calibration (``eval/calibration/<model dir>.npz`` above it, as
``dcign-evaluate`` writes it), the baseline beside it when there is one, the held-out test
sweeps, the face model and one Blender scene in a worker process, then serves the page of
:mod:`pipeline.explorer.page` on ``--host``:``--port`` and prints its URL. Nothing is shared on the
internet and Gradio's analytics are off. A checkpoint, calibration, face model or test folder
that cannot be used stops the command with one line naming the file.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from pathlib import Path

import click

from pipeline.evaluation.calibration import CalibrationError
from pipeline.explorer import ExploreError
from pipeline.explorer.explorer import log, opened
from pipeline.explorer.page import build_app, launch


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=Path("models/dcign"),
    show_default=True,
    help="Trained model directory (the pipeline's DC-IGN by default).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Calibration .npz from dcign-evaluate. Default: eval/calibration/<model dir name>.npz above the checkpoint.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A second model to compare with. Default: models/baseline beside the checkpoint, when it loads.",
)
@click.option(
    "--baseline-calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The baseline's calibration. Default: eval/calibration/<its dir name>.npz above it.",
)
@click.option("--no-baseline", is_flag=True, help="Show the checkpoint alone.")
@click.option(
    "--test-data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Rendered test sweeps (<dir>/azimuth, ...). Default: data/test when it exists.",
)
@click.option("--model", "face_model", default="default", show_default=True, help="Face model: default or a path.")
@click.option(
    "--samples", type=click.IntRange(1, 4096), default=None, help="Cycles samples. Default: the test data's, else 4."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (local only by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
def main(
    checkpoint, calibration, baseline, baseline_calibration, no_baseline, test_data, face_model, samples, host, port
):
    """Explore a trained model's latents in the browser, beside Blender renders of the same face."""
    optional = baseline is None
    if baseline is None and not no_baseline:
        beside = checkpoint.resolve().parent / "baseline"
        baseline = beside if beside.is_dir() and beside != checkpoint.resolve() else None
    if no_baseline:
        baseline = None
    if test_data is None and Path("data/test").is_dir():
        test_data = Path("data/test")
    try:
        import gradio  # noqa: F401 - the explore extra: say so before anything loads
    except ImportError:
        raise click.ClickException("gradio is not installed: pip install -e '.[explore]'") from None
    problem = port_problem(host, port)
    if problem:
        raise click.ClickException(problem)
    from dcign.checkpoint import CheckpointError
    from render.faces.loaders import FaceModelError
    from render.shards import ShardError

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dcign-explore: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with opened(
            checkpoint,
            calibration,
            baseline,
            baseline_calibration,
            test_data,
            face_model,
            samples,
            optional_baseline=optional,
        ) as explorer:
            import torch

            torch.set_num_threads(1)  # one image per request: more threads only contend with the Blender worker
            demo = build_app(explorer)
            url = launch(demo, host, port)
            names = ", ".join(f"{m.name} ({m.method})" for m in explorer.models.values())
            click.echo(f"dcign-explore: {names} on {url} (Ctrl-C to stop)")
            signal.signal(signal.SIGTERM, _interrupt)  # a kill stops Blender and the server as Ctrl-C does
            try:
                demo.block_thread()
            finally:
                demo.close()
    except (ExploreError, CalibrationError, CheckpointError, FaceModelError, ShardError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # e.g. the port is taken
        raise click.ClickException(f"{e.filename or f'{host}:{port}'}: {e.strerror or e}") from None
    finally:
        log.removeHandler(handler)


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (checked before minutes of loading), or None."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return f"{host}:{port}: cannot serve there ({e.strerror or e}); choose another --port"
    return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
