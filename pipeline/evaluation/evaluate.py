"""``dcign-evaluate``: score trained models on held-out data and write metrics, latents and plots.

The DVC ``evaluate`` stage. For every model (the DC-IGN and the entangled baseline) it encodes the
test sweeps, the factor grid and the recognition set, scores them with :mod:`pipeline.evaluation.scoring`,
and writes into ``--out`` (each output complete in a scratch directory first, then renamed in):

- ``metrics.json``: per model every score (``dvc metrics show`` reads it), and raw pixels'
  recognition as the reference;
- ``latents/<model>.npz``: grid latent means/log-variances with factor values and indices, and
  the KL of every latent on the test images;
- ``calibration/<model>.npz``: the latent <-> angle calibration fitted on the test sweeps
  (``dcign-rerender`` and ``dcign-fit`` read it);
- ``plots/scatter/<model>_<factor>.json``: the factor's latent against the true angle (test sweeps);
- ``plots/images/*.png``: scatter plots, latent traversals and re-render grids.

Which latents stand for a factor: a DC-IGN's assigned group; for a model without groups, its best
single latent, chosen on the test sweeps and scored on the grid (selection and scoring on
different data).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import click
import numpy as np

from pipeline import metrics as M
from pipeline.evaluation import calibration as C
from pipeline.evaluation import scoring as S
from pipeline.evaluation.encode import decode, encode
from render.params import ParamsError, get, load_params, source
from render.shards import RenderedDataset, ShardError, load_dataset, read_manifest
from render.stopping import shielded, stop_on_signals
from render.vocabulary import FACTORS, GRID, RECOGNITION, SWEEPS

# Written together, then swapped in.
OUTPUTS = ("latents", "calibration", "plots/scatter", "plots/images", "metrics.json")


def flat_images(d: RenderedDataset) -> np.ndarray:
    if d.images.ndim == 5:
        raise ShardError("evaluation needs greyscale renders (render.colour: grey)")
    return d.images.reshape(-1, d.resolution, d.resolution)


def score_model(model, method: str, data: dict, cfg: S.EvalConfig) -> tuple[dict, dict]:
    """Every score of one model, and the arrays its pictures and files need."""
    from dcign.config import GROUPED_METHODS

    test = data["test"]
    test_x, grid_x, recog_x = data["test_images"], data["grid_images"], data["recognition_images"]
    mu_t, lv_t = encode(model, test_x, cfg.encode_batch)
    mu_g, lv_g = encode(model, grid_x, cfg.encode_batch)
    mu_r, _ = encode(model, recog_x, cfg.encode_batch)
    grouped = method in GROUPED_METHODS
    coords = S.factor_latents(grouped, model.groups, mu_t, test)
    groups = S.index_groups(coords, mu_t.shape[1])
    calib = S.calibrate(mu_t, test, coords, data["grid_flat"])

    recon = decode(model, mu_t, cfg.encode_batch)
    r: dict = {"method": method}
    r["reconstruction"] = S.reconstruction_scores(test_x / 255.0, recon, test.identity.ravel(), cfg)
    r["factors"] = S.factor_scores(mu_g, data["grid_flat"], coords, cfg)
    r["invariance"] = S.invariance_scores(mu_t, test, groups)
    r["latents"] = S.latent_diagnostics(mu_t, lv_t, groups)
    r["disentanglement"] = S.disentanglement_scores(mu_g, lv_g, data["grid_idx"], data["grid_sizes"], cfg)
    r["rerender"], examples = S.rerender_scores(
        lambda z: decode(model, z, cfg.encode_batch),
        grid_x,
        mu_g,
        data["grid_idx"],
        data["grid_sizes"],
        data["grid_flat"],
        calib,
        data["mean_image"],
        cfg,
    )
    split = data["recognition_split"]
    r["recognition"] = {"whole": S.recognition_scores(mu_r, split, cfg)}
    if grouped:  # the paper's claim: the intrinsic group alone recognises faces across pose
        r["recognition"]["intrinsic"] = S.recognition_scores(mu_r[:, model.groups["intrinsic"]], split, cfg)
    extras = {
        "mu_grid": mu_g,
        "logvar_grid": lv_g,
        "kl_per_latent": np.asarray(M.kl_per_latent(mu_t, lv_t)),
        "calibration": calib,
        "coords": coords,
        "scatter": S.sweep_scatter(mu_t, test, coords),
        "examples": examples,
    }
    return r, extras


def traversal(model, mu_row: np.ndarray, coords: dict, mu_all: np.ndarray, steps: int = 9) -> np.ndarray:
    """(3, steps, R, R): vary each factor's latent(s) across its observed range for one face."""
    rows = []
    for f in FACTORS:
        lat = coords[f]["latents"]
        lo, hi = np.percentile(mu_all[:, lat], 2, axis=0), np.percentile(mu_all[:, lat], 98, axis=0)
        codes = np.repeat(mu_row[None], steps, axis=0)
        codes[:, lat] = lo + np.linspace(0, 1, steps)[:, None] * (hi - lo)
        rows.append(decode(model, codes))
    return np.stack(rows)


def expect_sweeps(option: str, dirs, allowed: tuple[str, ...]):
    """The datasets given to ``option``, which must hold only ``allowed`` sweeps.

    An azimuth sweep passed as the grid loads fine but has none of the grid's layout; checked
    here, the mistake is one line naming the directory instead of a KeyError deep in the scores.
    """
    for d in dirs:
        manifest = read_manifest(Path(d))
        sweep = manifest.get("sweep") if manifest else None
        if manifest is not None and sweep not in allowed:
            want = " or ".join(allowed) if len(allowed) < 3 else "a training sweep (" + ", ".join(allowed) + ")"
            raise ShardError(f"{d}: {option} needs {want}, got a {sweep!r:.40} sweep")
    return load_dataset(list(dirs))


def load_data(test_dirs, grid_dir, recognition_dir, train_dirs, cfg: S.EvalConfig) -> dict:
    """The held-out sets (and the training images for the mean-image reference), flattened once."""
    test = expect_sweeps("--test", test_dirs, SWEEPS)
    grid = expect_sweeps("--grid", [grid_dir], (GRID,))
    recog = expect_sweeps("--recognition", [recognition_dir], (RECOGNITION,))
    train = expect_sweeps("--train", train_dirs, SWEEPS)
    res = {d.resolution for d in (test, grid, recog, train)}
    if len(res) != 1:
        raise ShardError(f"test, grid, recognition and training data disagree on the resolution ({sorted(res)})")
    idx, sizes, flat = S.grid_layout(grid)
    train_factors = np.stack([train.factor(f).ravel() for f in FACTORS], axis=1)
    ranges = np.ptp(np.concatenate([train_factors, np.stack([flat[f] for f in FACTORS], axis=1)]), axis=0)
    return {
        "test": test,
        "grid": grid,
        "recognition": recog,
        "resolution": res.pop(),
        "test_images": flat_images(test),
        "grid_images": flat_images(grid),
        "recognition_images": flat_images(recog),
        "grid_idx": idx,
        "grid_sizes": sizes,
        "grid_flat": flat,
        "recognition_split": S.recognition_split(recog),
        "mean_image": S.MeanImage(flat_images(train), train_factors, ranges, cfg.mean_image_neighbours),
    }


def evaluate(models: dict[str, Path], data: dict, out_dir: Path, cfg: S.EvalConfig, progress: bool = False) -> dict:
    """Score every model; write metrics, latents, calibrations and plots into ``out_dir`` (swapped in)."""
    from tqdm import tqdm

    from dcign.checkpoint import load_model, trained_method
    from pipeline.evaluation import plots

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # from the first folder made: a stop between two of them must remove the first too
        for sub in ("latents", "calibration", "plots/scatter", "plots/images"):
            (tmp / sub).mkdir(parents=True)
        results: dict = {}
        for name, path in tqdm(models.items(), desc="evaluate", unit="model", disable=not progress, file=sys.stderr):
            model, mcfg, info = load_model(path)
            method = trained_method(info, path)
            if mcfg.resolution != data["resolution"]:
                raise ShardError(
                    f"{path}: model resolution {mcfg.resolution} does not match the data ({data['resolution']})"
                )
            r, ex = score_model(model, method, data, cfg)
            results[name] = r
            _write_model_files(tmp, name, model, data, ex, cfg, plots)
        pix = data["recognition_images"].reshape(len(data["recognition_images"]), -1).astype(np.float32)
        results["pixels"] = {"recognition": {"whole": S.recognition_scores(pix, data["recognition_split"], cfg)}}
        (tmp / "metrics.json").write_text(json.dumps(_finite(results), indent=2, sort_keys=True) + "\n")
        # Swap each output in by rename; other files there (DVC's .gitignore) stay. A stop waits until
        # all are in, so --out never mixes new metrics with old latents.
        with shielded():
            for rel in OUTPUTS:
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(tmp / rel, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def _write_model_files(tmp: Path, name: str, model, data: dict, ex: dict, cfg: S.EvalConfig, plots) -> None:
    idx, sizes, flat = data["grid_idx"], data["grid_sizes"], data["grid_flat"]
    buf = io.BytesIO()  # then one write: a failed write to a zip left open prints a traceback at exit
    np.savez(
        buf,
        mu=ex["mu_grid"],
        logvar=ex["logvar_grid"],
        factor_indices=idx,
        factor_names=np.array(["identity", *FACTORS]),
        factor_sizes=np.array(sizes),
        kl_per_latent=ex["kl_per_latent"],
        **{f: flat[f] for f in (*FACTORS, "identity")},
    )
    (tmp / "latents" / f"{name}.npz").write_bytes(buf.getvalue())
    C.save(tmp / "calibration" / f"{name}.npz", ex["calibration"])
    for f, (truth, latent) in ex["scatter"].items():
        rows = [{"truth": float(t), "latent": float(z)} for t, z in zip(truth, latent, strict=True)]
        (tmp / "plots" / "scatter" / f"{name}_{f}.json").write_text(json.dumps(rows))
    images = tmp / "plots" / "images"
    plots.scatter_png(images / f"{name}_latent_vs_truth.png", ex["scatter"], name)
    middle = (idx[:, 1] == sizes[1] // 2) & (idx[:, 2] == sizes[2] // 2) & (idx[:, 3] == sizes[3] // 2)
    frontal = np.flatnonzero(middle)[: cfg.traversal_faces]
    mu_g = ex["mu_grid"]
    plots.traversal_png(
        images / f"{name}_traversal.png", [traversal(model, mu_g[i], ex["coords"], mu_g) for i in frontal], FACTORS
    )
    plots.rerender_png(images / f"{name}_rerender.png", ex["examples"])


def _finite(obj):
    """JSON has no inf/nan: write them as null so every reader accepts the file."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# Upper bounds of the evaluate section, checked before any work (a typo of 10**12 would run for ever).
EVAL_MAXIMA = {
    "encode_batch": (65536, "a batch of 64x64 images is held in memory with its activations"),
    "score_samples": (1_000_000, "the classifier scores are stable from a few thousand"),
    "mig_samples": (1_000_000, "Monte Carlo samples per latent"),
    "rerender_pairs": (100_000, "each pair is decoded and scored"),
    "traversal_faces": (64, "rows of a picture"),
    "bootstrap": (100_000, "resamples of every interval"),
    "mig_halves": (1000, "each half is a full MIG estimate"),
    "mean_image_neighbours": (10_000, "training images averaged per target"),
    "dci_trees": (10_000, "boosting stages per factor"),
}


def config_from_params(p: dict) -> S.EvalConfig:
    """The ``evaluate`` section (and the top-level seed) of a params mapping; every key must be present."""

    def bounded(key: str) -> int:
        v = get(p, f"evaluate.{key}", int, positive=True)
        maximum, reason = EVAL_MAXIMA[key]
        if v > maximum:
            raise ParamsError(f"{source(p)}: evaluate.{key} must be at most {maximum} ({reason}), got {v}")
        return v

    return S.EvalConfig(seed=get(p, "seed", int), **{k: bounded(k) for k in EVAL_MAXIMA})


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    required=True,
    metavar="NAME=DIR",
    help="a trained model directory under a name, e.g. dcign=models/dcign (repeatable)",
)
@click.option(
    "--test",
    "test_dirs",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False),
    help="held-out test sweep directory (repeatable)",
)
@click.option("--grid", "grid_dir", required=True, type=click.Path(file_okay=False), help="factor grid directory")
@click.option(
    "--recognition",
    "recognition_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="recognition set directory",
)
@click.option(
    "--train",
    "train_dirs",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False),
    help="training sweep directory, for the mean-image reference of re-rendering (repeatable)",
)
@click.option("--out", "out_dir", default="eval", show_default=True, type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=True, help="Show a tqdm progress bar.")
def main(params_path, model_specs, test_dirs, grid_dir, recognition_dir, train_dirs, out_dir, progress):
    """Score trained models on held-out data; write eval/metrics.json, latents, calibrations and plots."""
    from dcign.checkpoint import CheckpointError

    try:
        cfg = config_from_params(load_params(params_path))
    except ParamsError as e:
        raise e.as_click() from None
    models = {}
    for spec in model_specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.isidentifier() or not path or name == "pixels":
            raise click.BadParameter(
                f"expected NAME=DIR with NAME an identifier other than 'pixels', got {spec!r}", param_hint="--model"
            )
        models[name] = Path(path)
    try:
        data = load_data(
            [Path(d) for d in test_dirs], Path(grid_dir), Path(recognition_dir), [Path(d) for d in train_dirs], cfg
        )
        with stop_on_signals("dcign-evaluate", "the earlier outputs in --out"):
            results = evaluate(models, data, Path(out_dir), cfg, progress=progress)
    except (ShardError, CheckpointError, C.CalibrationError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out_dir}: {e.strerror or e}") from None
    for name, r in results.items():
        if "factors" in r:
            az = r["factors"]["azimuth"]["abs_pearson"]
            print(
                f"{name}: recon PSNR {r['reconstruction']['psnr']:.2f} dB, |corr(azimuth)| {az:.3f}, "
                f"MIG {r['disentanglement']['mig_continuous']:.3f}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
