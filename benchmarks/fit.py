"""Seconds per face of dcign-fit on ONE core: the amortised read-out, the code-space and the pixel-space search.

The process (and the Blender worker it starts, which inherits the affinity) is pinned to one core
and torch to one thread; faces are the fit stage's held-out faces (``pipeline.inverse.stage.held_out``,
``fit.seed`` of params.yaml), each fitted at ``fit.budget`` renders per search with the fit stage's
settings. Run it on an idle machine.

    python -m benchmarks.fit --faces 5 --json benchmarks/results/fit.json
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# Run as a script, benchmarks/ would come first on sys.path and its render.py would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import click  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import record  # noqa: E402


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--checkpoint", default="models/dcign", show_default=True, type=click.Path(path_type=Path))
@click.option("--calibration", default="eval/calibration/dcign.npz", show_default=True, type=click.Path(path_type=Path))
@click.option("--faces", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--core", default=0, show_default=True, type=click.IntRange(0, 4095), help="The core to pin to.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write the figures here.")
def main(params_path, checkpoint, calibration, faces, core, json_path):
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)
    from dcign.checkpoint import load_model
    from pipeline.evaluation import calibration as C
    from pipeline.inverse.fit import fit_image
    from pipeline.inverse.stage import config_from_params, held_out, search_setup
    from render.faces.loaders import load_face_model
    from render.params import load_params
    from render.scene_renderer import SceneRenderer

    cfg, render_cfg = config_from_params(load_params(params_path))
    model, mcfg, _ = load_model(checkpoint)
    table = C.load(calibration, mcfg.latent)
    model_faces = load_face_model(render_cfg["model"])
    fcfg, space = search_setup(cfg, render_cfg, model_faces, table)
    truths = held_out(faces, cfg.seed, render_cfg["ranges"], model_faces.n_shape, model_faces.n_albedo)
    seconds: dict[str, list[float]] = {"amortised": [], "code": [], "pixel": []}
    with SceneRenderer(model_faces, mcfg.resolution, render_cfg["samples"], render_cfg["device"]) as render:
        render([truths[0]])  # Blender's first render compiles kernels: not part of any face
        t_start = time.perf_counter()
        for truth in truths:
            image = render([truth])[0]
            fit = fit_image(image, model, table, render, space, fcfg, ("code", "pixel"))
            seconds["amortised"].append(fit.amortised_seconds)
            for name, s in fit.searches.items():
                seconds[name].append(s.seconds)
        wall = time.perf_counter() - t_start
    mean = {k: float(np.mean(v)) for k, v in seconds.items()}
    click.echo(f"one core (cpu {core}), torch 1 thread, budget {cfg.budget} renders per search, {faces} faces:")
    for k, v in mean.items():
        click.echo(f"  {k:>9}: {v:.2f} s per face")
    click.echo(f"  all three: {wall / faces:.2f} s per face (wall, target render included)")
    if json_path:
        settings = {"faces": faces, "budget": cfg.budget, "core": core, "torch_threads": 1}
        settings["samples"] = render_cfg["samples"]
        results = {"seconds_per_face": mean, "wall_seconds_per_face": wall / faces, "seconds": seconds}
        record.write(json_path, "fit", settings, results, torch=torch.__version__)


if __name__ == "__main__":
    main()
