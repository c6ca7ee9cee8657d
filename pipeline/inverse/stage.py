"""The DVC ``fit`` stage: fit held-out rendered faces whose scene is known, and score the fits.

``python -m pipeline.inverse.stage --params params.yaml --checkpoint models/dcign
--calibration eval/calibration/dcign.npz --metrics eval/fit.json --out eval/fit``

It renders ``fit.images`` new faces (identities drawn from ``fit.seed``, a seed no training or
test sweep uses; angles uniform over the rendered ranges; all shape and albedo coefficients
N(0, 1)) with the renderer's settings (``render.samples``, ``render.model``, the checkpoint's
resolution), then fits each as ``dcign-fit`` does (:mod:`pipeline.inverse.fit`): the amortised estimate,
a code-space search and a pixel-space search, each search with ``fit.budget`` renders, all
rendered by one persistent Blender scene. Outputs:

- ``eval/fit.json`` (``dvc metrics show``): per method (``amortised``, ``code``, ``pixel``) the
  median and 90th-percentile absolute error in degrees of azimuth, elevation and light; the mean
  over images of the correlation of recovered vs true shape coefficients (the searched leading
  ``fit.shape_components``; the amortised estimate recovers none) and the pooled correlation over
  all of them; PSNR and SSIM of the best render against the input; renders and seconds per image.
- ``eval/fit/results/<face>.json``: each face's truth, rows and traces (a rerun by hand skips the
  faces already fitted with the same settings); ``eval/fit/plots/errors.png`` (error histograms)
  and ``eval/fit/plots/contact_sheet.png`` (input | amortised | code | pixel, one face a row).

A fit costs about ``2 x fit.budget`` renders per face, so the stage lives in its own ``fit/dvc.yaml``
and runs with ``dvc repro fit/dvc.yaml``, not with the default ``dvc repro``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.images import decode_image, encode_image
from pipeline.inverse.fit import MAX_BUDGET, FitConfig, FitError, SearchSpace, fit_image, fit_rows, traces
from pipeline.inverse.results import finite, item_seed, load_result, strip, write_result
from render.atomic import atomic_write_bytes, atomic_write_json, check_writable, sha256_file
from render.job import DEVICES
from render.params import ParamsError, get, get_range, load_params, source
from render.scene_renderer import Scene, SceneRenderer
from render.vocabulary import FACTORS

METHODS = ("amortised", "code", "pixel")
FORMAT = "dcign-fit-stage/1"
MAX_IMAGES = 100_000


@dataclass(frozen=True)
class StageConfig:
    images: int = 50  # held-out faces
    budget: int = 200  # renders per search
    seed: int = 2000  # draws the faces and seeds the searches
    shape_components: int = 10  # leading shape coefficients searched
    albedo_components: int = 3  # leading albedo coefficients searched


def config_from_params(p: dict) -> tuple[StageConfig, dict]:
    """The ``fit`` section (every key present) and the render settings the faces are drawn with."""
    cfg = StageConfig(
        images=get(p, "fit.images", int, positive=True),
        budget=get(p, "fit.budget", int, positive=True),
        seed=get(p, "fit.seed", int),
        shape_components=get(p, "fit.shape_components", int),
        albedo_components=get(p, "fit.albedo_components", int),
    )
    for key in ("shape_components", "albedo_components"):
        if getattr(cfg, key) < 0:
            raise ParamsError(f"{source(p)}: fit.{key} must not be negative, got {getattr(cfg, key)}")
    if not 2 <= cfg.budget <= MAX_BUDGET:
        raise ParamsError(f"{source(p)}: fit.budget must be 2 to {MAX_BUDGET} renders, got {cfg.budget}")
    if cfg.images > MAX_IMAGES:
        raise ParamsError(f"{source(p)}: fit.images must be at most {MAX_IMAGES} faces, got {cfg.images}")
    render = {
        "samples": get(p, "render.samples", int, positive=True),
        "model": str(get(p, "render.model", str)),
        "device": get(p, "render.device", str, choices=DEVICES),
        "ranges": {f: tuple(get_range(p, f"render.ranges.{f}")) for f in FACTORS},
    }
    return cfg, render


def search_setup(cfg: StageConfig, render_cfg: dict, faces, table: C.Calibration) -> tuple[FitConfig, SearchSpace]:
    """The stage's search settings and space for a face model and a calibration (angles over its ranges)."""
    fcfg = FitConfig(
        budget=cfg.budget,
        shape_components=min(cfg.shape_components, faces.n_shape),
        albedo_components=min(cfg.albedo_components, faces.n_albedo),
        seed=cfg.seed,
    ).validate()
    ranges = {f: table[f].range if f in table else render_cfg["ranges"][f] for f in FACTORS}
    return fcfg, SearchSpace(ranges, fcfg.shape_components, fcfg.albedo_components, fcfg.coefficient_bound)


def held_out(n: int, seed: int, ranges: dict, n_shape: int, n_albedo: int) -> list[Scene]:
    """``n`` scenes: angles uniform over the ranges, every coefficient N(0, 1); a pure function of the seed."""
    rng = np.random.default_rng([int(seed), 0xF17, 1])
    scenes = []
    for _ in range(n):
        az, el, li = (float(rng.uniform(*ranges[f])) for f in FACTORS)
        shape = tuple(float(c) for c in rng.standard_normal(n_shape))
        albedo = tuple(float(c) for c in rng.standard_normal(n_albedo))
        scenes.append(Scene(az, el, li, shape, albedo))
    return scenes


def summarise(results: list[dict], cfg: StageConfig, resolution: int) -> dict:
    """eval/fit.json: per method the angle errors, shape recovery, re-render quality and cost."""
    out: dict = {"images": len(results), "budget": cfg.budget, "resolution": resolution}
    for method in METHODS:
        rows = [r for res in results for r in res["rows"] if r["method"] == method]
        if not rows:
            continue
        m: dict = {}
        for f in FACTORS:
            err = np.array([r[f"error_{f}"] for r in rows], np.float64)
            m[f] = {"median_abs_error": float(np.median(err)), "p90_abs_error": float(np.percentile(err, 90))}
        corr = [r["shape_correlation"] for r in rows if r.get("shape_correlation") is not None]
        m["shape_correlation"] = float(np.mean(corr)) if corr else None
        rec = [(r["shape"], res["truth"]["shape"]) for res in results for r in res["rows"] if r["method"] == method]
        k = min(len(a) for a, _ in rec)
        if k:
            a = np.concatenate([np.asarray(x[:k]) for x, _ in rec])
            b = np.concatenate([np.asarray(t[:k]) for _, t in rec])
            m["shape_correlation_pooled"] = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 else None
        else:
            m["shape_correlation_pooled"] = None
        m["psnr"] = float(np.mean([r["psnr"] for r in rows]))
        m["ssim"] = float(np.mean([r["ssim"] for r in rows]))
        m["renders_per_image"] = float(np.mean([r["renders"] for r in rows]))
        m["seconds_per_image"] = float(np.mean([r["seconds"] for r in rows]))
        out[method] = m
    return finite(out)


# --- plots -----------------------------------------------------------------------------------------
def errors_png(path: Path, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FACTORS), figsize=(4.2 * len(FACTORS), 3.4), squeeze=False)
    for ax, f in zip(axes[0], FACTORS, strict=True):
        errs = {m: [r[f"error_{f}"] for res in results for r in res["rows"] if r["method"] == m] for m in METHODS}
        top = max([max(v) for v in errs.values() if v] + [1.0])
        bins = np.linspace(0, top, 21)
        for m, v in errs.items():
            if v:
                ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=f"{m} (median {np.median(v):.1f})")
        ax.set(xlabel=f"|{f} error| (degrees)", ylabel="faces", title=f)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def contact_sheet(pictures: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Rows of (input | amortised | code | pixel) strips stacked, white gaps between them."""
    w = max(p.shape[1] for p in pictures)
    rows = []
    for p in pictures:
        row = np.full((p.shape[0], w), 255, np.uint8)
        row[:, : p.shape[1]] = p
        rows += [row, np.full((gap, w), 255, np.uint8)]
    return np.concatenate(rows[:-1])


# --- the stage -------------------------------------------------------------------------------------
def run_stage(checkpoint: Path, calibration: Path, params: dict, metrics_path: Path, out: Path, progress=True) -> dict:
    from tqdm import tqdm

    from dcign.checkpoint import load_model, trained_method
    from dcign.config import GROUPED_METHODS
    from render.faces.loaders import load_face_model
    from render.job import model_fingerprint

    cfg, render_cfg = config_from_params(params)
    model, mcfg, info = load_model(checkpoint)
    grouped = trained_method(info, checkpoint) in GROUPED_METHODS
    table = C.load(calibration, mcfg.latent)
    faces = load_face_model(render_cfg["model"])
    for sub in ("results", "plots", "images"):
        check_writable(out / sub, FitError)
    fcfg, space = search_setup(cfg, render_cfg, faces, table)
    truths = held_out(cfg.images, cfg.seed, render_cfg["ranges"], faces.n_shape, faces.n_albedo)
    key = {
        "format": FORMAT,
        "checkpoint": sha256_file(checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint),
        "calibration": sha256_file(calibration),
        "face_model": model_fingerprint(faces),
        "samples": render_cfg["samples"],
        "device": render_cfg["device"],
        **asdict(cfg),
        "search": {k: v for k, v in asdict(fcfg).items() if k != "seed"},
    }
    key = json.loads(json.dumps(key))
    results = []
    with SceneRenderer(faces, mcfg.resolution, render_cfg["samples"], render_cfg["device"]) as render:
        for i, truth in enumerate(tqdm(truths, desc="fit", unit="face", disable=not progress, file=sys.stderr)):
            name = f"face-{i:04d}"
            done = load_result(out / "results" / f"{name}.json", {**key, "face": i})
            if done is not None:
                results.append(done)
                continue
            image = render([truth])[0]
            c = replace(fcfg, seed=item_seed(cfg.seed, name))
            fit = fit_image(image, model, table, render, space, c, ("code", "pixel"), grouped)
            t = truth.as_dict()
            result = {
                "image": name,
                "truth": t,
                "rows": fit_rows(fit, image, t),
                "trace": traces(fit),
                "key": {**key, "face": i},
            }
            strip_png = strip([image, fit.amortised_image, *(s.image for s in fit.searches.values())])
            atomic_write_bytes(out / "images" / f"{name}.png", encode_image(strip_png))
            results.append(write_result(out / "results" / f"{name}.json", result))
    pictures = [decode_image(out / "images" / f"{r['image']}.png") for r in results[:16]]
    summary = summarise(results, cfg, mcfg.resolution)
    errors_png(out / "plots" / "errors.png", results)
    if pictures:
        atomic_write_bytes(out / "plots" / "contact_sheet.png", encode_image(contact_sheet(pictures)))
    atomic_write_json(metrics_path, summary)
    return summary


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--checkpoint", default="models/dcign", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--calibration",
    default="eval/calibration/dcign.npz",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--metrics", "metrics_path", default="eval/fit.json", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", default="eval/fit", show_default=True, type=click.Path(path_type=Path))
@click.option("--progress/--no-progress", default=True)
def main(params_path, checkpoint, calibration, metrics_path, out_dir, progress):
    """Fit held-out rendered faces (amortised, code-space and pixel-space); write eval/fit.json and plots."""
    from dcign.checkpoint import CheckpointError
    from render.faces.loaders import FaceModelError

    try:
        params = load_params(params_path)
        config_from_params(params)
    except ParamsError as e:
        raise e.as_click() from None
    try:
        s = run_stage(checkpoint, calibration, params, metrics_path, out_dir, progress)
    except (FitError, C.CalibrationError, CheckpointError, FaceModelError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out_dir}: {e.strerror or e}") from None
    for m in METHODS:
        if m in s:
            errs = ", ".join(f"{f} {s[m][f]['median_abs_error']:.1f}" for f in FACTORS)
            print(f"{m}: median |error| {errs} degrees; {s[m]['seconds_per_image']:.1f} s per face", file=sys.stderr)


if __name__ == "__main__":
    main()
