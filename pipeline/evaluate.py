"""Evaluate trained models: reconstruction, latent-vs-truth, disentanglement, re-rendering, recognition.

``dcign-evaluate`` (the DVC ``evaluate`` stage) encodes the held-out test batches
and the factor grid with every model it is given (the DC-IGN and the entangled
baseline), and writes (each output complete in a scratch directory first, then renamed into place):

- ``metrics.json``: per model, every score below (``dvc metrics show`` reads it);
- ``latents/<model>.npz``: grid latent means/log-variances with factor values and indices;
- ``plots/scatter/<model>_<factor>.json``: assigned latent against the true angle (test batches);
- ``plots/images/*.png``: scatter plots, latent traversals and re-render grids.

For the DC-IGN a factor's latent is the first unit of its group; for a model
without groups (the baseline) it is the single latent that correlates best with
the factor on the grid, as in the paper's Figure 7 comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from pipeline import metrics as M
from pipeline.encode import decode, encode
from pipeline.params import ParamsError, get, load_params
from render.shards import FACTORS, RenderedDataset, ShardError, load_dataset

OUTPUTS = ("latents", "plots/scatter", "plots/images", "metrics.json")  # written together, then swapped in
SWEEP_FACTOR = {"azimuth": "azimuth", "elevation": "elevation", "light": "light"}


@dataclass(frozen=True)
class EvalConfig:
    seed: int = 0  # seeds every sampled score
    encode_batch: int = 256  # images per forward pass
    score_samples: int = 2000  # training points for the beta-VAE / FactorVAE classifiers (half as many to test)
    mig_samples: int = 2000  # Monte Carlo samples per latent for the continuous MIG
    rerender_pairs: int = 300  # (source, target) grid pairs per factor for re-rendering scores
    traversal_faces: int = 4  # faces shown in the traversal and re-render pictures


# --- per-model pieces ------------------------------------------------------------------------------
def factor_latents(model, mu_grid: np.ndarray, grid_factors: dict) -> dict[str, dict]:
    """Which latent(s) stand for each factor: the DC-IGN's groups, or the baseline's best single latents."""
    groups = getattr(model, "groups", None)
    out = {}
    for f in FACTORS:
        if groups is not None and not getattr(model, "entangled", False):
            sl = groups[f]
            out[f] = {"slice": sl, "index": sl.start, "kind": "group"}
        else:
            best = M.best_single_latent(mu_grid, grid_factors[f])
            i = max(int(best["index"]), 0)  # -1 when every latent is constant (a collapsed model)
            out[f] = {"slice": slice(i, i + 1), "index": i, "kind": "best-single"}
    return out


def test_factor_scores(mu: np.ndarray, data: RenderedDataset, coords: dict) -> tuple[dict, dict]:
    """Figure 6: assigned latent vs true angle, pooled over the single-factor test batches."""
    scores, scatter = {}, {}
    for sweep, f in SWEEP_FACTOR.items():
        sel = data.sweep == sweep
        if not sel.any():
            continue
        latent = mu.reshape(data.n_batches, data.batch_size, -1)[sel][..., coords[f]["index"]].ravel()
        truth = data.factor(f)[sel].ravel()
        c = M.latent_factor_correlation(latent, truth)
        scores[f] = {
            "pearson": c["pearson"],
            "abs_pearson": abs(c["pearson"]),
            "spearman": c["spearman"],
            "r2": c["r2"],
            "latent_index": coords[f]["index"],
        }
        scatter[f] = (truth, latent)
    return scores, scatter


def invariance_scores(mu: np.ndarray, data: RenderedDataset, group_slices: dict) -> dict:
    by_batch = list(mu.reshape(data.n_batches, data.batch_size, -1))
    active = [SWEEP_FACTOR.get(s, "intrinsic") for s in data.sweep]
    return M.invariance_ratio(by_batch, group_slices, active)


def grid_layout(grid: RenderedDataset) -> tuple[np.ndarray, list[int], dict]:
    """Factor indices (N, 4) over (identity, azimuth, elevation, light), sizes, and flat factor values."""
    flat = {f: grid.factor(f).ravel() for f in (*FACTORS, "identity")}
    idx, sizes = [], []
    for f in ("identity", *FACTORS):
        values, inverse = np.unique(flat[f], return_inverse=True)
        idx.append(inverse)
        sizes.append(len(values))
    return np.stack(idx, axis=1), sizes, flat


def disentanglement_scores(mu, logvar, idx, sizes, cfg: EvalConfig) -> dict:
    """Standard scores on the grid's latent means (factors: identity, azimuth, elevation, light)."""
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(mu))
    half = len(mu) // 2
    tr, te = order[:half], order[half:]
    pose = [1, 2, 3]  # azimuth, elevation, light: the factors the paper's groups target
    mig_c = M.mig_continuous(
        mu, logvar, idx[:, pose], [sizes[i] for i in pose], n_samples=cfg.mig_samples, seed=cfg.seed
    )
    # DCI and SAP fit linear predictors, which only make sense for ordered factors: the angles.
    angles = idx[:, pose].astype(float)
    dci = M.dci(mu[tr], angles[tr], mu[te], angles[te])
    return {
        "mig": M.mig(mu, idx)["mig"],
        "mig_continuous": mig_c["mig"],
        "mig_continuous_per_factor": dict(zip(FACTORS, mig_c["mig_per_factor"], strict=True)),
        "dci_disentanglement": dci["disentanglement"],
        "dci_completeness": dci["completeness"],
        "dci_informativeness": dci["informativeness"],
        "sap": M.sap(mu[tr], angles[tr], mu[te], angles[te])["sap"],
        "beta_vae_accuracy": M.beta_vae_score(
            mu, idx, sizes, n_train=cfg.score_samples, n_eval=cfg.score_samples // 2, seed=cfg.seed
        )["eval_accuracy"],
        "factor_vae_accuracy": M.factor_vae_score(
            mu, idx, sizes, n_train=cfg.score_samples, n_eval=cfg.score_samples // 2, seed=cfg.seed
        )["eval_accuracy"],
    }


def rerender_scores(model, images, mu, idx, sizes, coords, cfg: EvalConfig) -> tuple[dict, dict]:
    """Edit one factor's latent(s) to a target angle, decode, compare with the true render at that angle.

    The latent value for a target angle is the mean code of that factor's latent(s)
    over grid images at that angle. Baseline: the input image itself.
    """
    rng = np.random.default_rng(cfg.seed + 1)
    # Grid position -> flat row, to find the true image at the target angle.
    lookup = {tuple(r): i for i, r in enumerate(idx)}
    out, examples = {}, {}
    for k, f in enumerate(FACTORS, start=1):
        sl = coords[f]["slice"]
        target_code = np.stack([mu[idx[:, k] == v][:, sl].mean(axis=0) for v in range(sizes[k])])
        src = rng.integers(len(mu), size=cfg.rerender_pairs)
        tgt_val = (idx[src, k] + rng.integers(1, sizes[k], size=len(src))) % sizes[k]  # always a different angle
        tgt = []
        for s, v in zip(src, tgt_val, strict=True):
            key = list(idx[s])
            key[k] = v
            tgt.append(lookup[tuple(key)])
        tgt = np.array(tgt)
        edited = mu[src].copy()
        edited[:, sl] = target_code[tgt_val]
        pred = decode(model, edited, cfg.encode_batch)
        truth = images[tgt].astype(np.float32) / 255.0
        source = images[src].astype(np.float32) / 255.0
        out[f] = {
            "psnr": M.psnr(pred, truth),
            "ssim": M.ssim(pred, truth),
            "input_psnr": M.psnr(source, truth),
            "input_ssim": M.ssim(source, truth),
        }
        out[f]["psnr_gain"] = out[f]["psnr"] - out[f]["input_psnr"]
        n = cfg.traversal_faces
        examples[f] = np.stack([source[:n], pred[:n], truth[:n]], axis=1)  # (n, 3, R, R)
    return out, examples


def recognition_scores(features: np.ndarray, idx: np.ndarray, sizes: list[int]) -> dict:
    """Identify faces across azimuth: gallery at the most frontal azimuth, probes at every other azimuth.

    Elevation and light are held at their middle grid value, so only the pose differs.
    """
    frontal = sizes[1] // 2
    mid = (idx[:, 2] == sizes[2] // 2) & (idx[:, 3] == sizes[3] // 2)
    gallery = mid & (idx[:, 1] == frontal)
    probes = mid & (idx[:, 1] != frontal)
    return M.identification_accuracy(features[gallery], idx[gallery, 0], features[probes], idx[probes, 0])


def traversal(model, mu_row: np.ndarray, coords: dict, mu_all: np.ndarray, steps: int = 9) -> np.ndarray:
    """(3, steps, R, R): vary each factor's latent(s) across its observed range for one face."""
    rows = []
    for f in FACTORS:
        sl = coords[f]["slice"]
        lo, hi = np.percentile(mu_all[:, sl], 2, axis=0), np.percentile(mu_all[:, sl], 98, axis=0)
        codes = np.repeat(mu_row[None], steps, axis=0)
        codes[:, sl] = lo + np.linspace(0, 1, steps)[:, None] * (hi - lo)
        rows.append(decode(model, codes))
    return np.stack(rows)


# --- the stage ------------------------------------------------------------------------------------
def evaluate(models: dict[str, Path], test_dirs: list[Path], grid_dir: Path, out_dir: Path, cfg: EvalConfig) -> dict:
    """Score every model; write metrics, latents and plots into ``out_dir`` (replaced atomically)."""
    from dcign.checkpoint import load_model
    from pipeline import plots

    test = load_dataset(test_dirs)
    grid = load_dataset([grid_dir])
    idx, sizes, grid_flat = grid_layout(grid)
    test_images = test.images.reshape(-1, test.resolution, test.resolution)
    grid_images = grid.images.reshape(-1, grid.resolution, grid.resolution)

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "latents").mkdir(parents=True)
    (tmp / "plots" / "scatter").mkdir(parents=True)
    (tmp / "plots" / "images").mkdir(parents=True)

    results: dict = {}
    for name, path in models.items():
        model, mcfg, info = load_model(path)
        if mcfg.resolution != test.resolution or mcfg.resolution != grid.resolution:
            raise ShardError(
                f"{path}: model resolution {mcfg.resolution} does not match the data "
                f"({test.resolution}, grid {grid.resolution})"
            )
        model.entangled = bool(info.get("entangled", False))
        mu_t, _ = encode(model, test_images, cfg.encode_batch)
        mu_g, lv_g = encode(model, grid_images, cfg.encode_batch)
        coords = factor_latents(model, mu_g, grid_flat)
        recon = decode(model, mu_t, cfg.encode_batch)
        r = {"reconstruction": M.reconstruction_metrics(test_images.astype(np.float32) / 255.0, recon)}
        r["factors"], scatter = test_factor_scores(mu_t, test, coords)
        r["invariance"] = invariance_scores(mu_t, test, model.groups)
        r["disentanglement"] = disentanglement_scores(mu_g, lv_g, idx, sizes, cfg)
        r["rerender"], examples = rerender_scores(model, grid_images, mu_g, idx, sizes, coords, cfg)
        intrinsic = mu_g[:, model.groups["intrinsic"]] if not model.entangled else mu_g
        r["recognition_top1"] = recognition_scores(intrinsic, idx, sizes)["top1"]
        results[name] = r

        np.savez(
            tmp / "latents" / f"{name}.npz",
            mu=mu_g,
            logvar=lv_g,
            factor_indices=idx,
            factor_names=np.array(["identity", *FACTORS]),
            factor_sizes=np.array(sizes),
            **{f: grid_flat[f] for f in (*FACTORS, "identity")},
        )
        for f, (truth, latent) in scatter.items():
            rows = [{"truth": float(t), "latent": float(z)} for t, z in zip(truth, latent, strict=True)]
            (tmp / "plots" / "scatter" / f"{name}_{f}.json").write_text(json.dumps(rows))
        plots.scatter_png(tmp / "plots" / "images" / f"{name}_latent_vs_truth.png", scatter, name)
        frontal = np.flatnonzero(
            (idx[:, 1] == sizes[1] // 2) & (idx[:, 2] == sizes[2] // 2) & (idx[:, 3] == sizes[3] // 2)
        )[: cfg.traversal_faces]
        plots.traversal_png(
            tmp / "plots" / "images" / f"{name}_traversal.png",
            [traversal(model, mu_g[i], coords, mu_g) for i in frontal],
            FACTORS,
        )
        plots.rerender_png(tmp / "plots" / "images" / f"{name}_rerender.png", examples)

    results["pixels"] = {
        "recognition_top1": recognition_scores(
            grid_images.reshape(len(grid_images), -1).astype(np.float32), idx, sizes
        )["top1"]
    }
    (tmp / "metrics.json").write_text(json.dumps(_finite(results), indent=2, sort_keys=True) + "\n")
    # Swap each output in by rename; other files there (DVC's .gitignore) stay.
    for rel in OUTPUTS:
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp / rel, target)
    shutil.rmtree(tmp)
    return results


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


def config_from_params(p: dict) -> EvalConfig:
    return EvalConfig(
        seed=get(p, "seed", int),
        encode_batch=get(p, "evaluate.encode_batch", int, positive=True),
        score_samples=get(p, "evaluate.score_samples", int, positive=True),
        mig_samples=get(p, "evaluate.mig_samples", int, positive=True),
        rerender_pairs=get(p, "evaluate.rerender_pairs", int, positive=True),
        traversal_faces=get(p, "evaluate.traversal_faces", int, positive=True),
    )


@click.command()
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
@click.option("--out", "out_dir", default="eval", show_default=True, type=click.Path(file_okay=False))
def main(params_path, model_specs, test_dirs, grid_dir, out_dir):
    """Score trained models on held-out data; write eval/metrics.json and plots."""
    from dcign.checkpoint import CheckpointError

    cfg = config_from_params(load_params(params_path))
    models = {}
    for spec in model_specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.isidentifier() or not path:
            raise click.BadParameter(f"expected NAME=DIR, got {spec!r}", param_hint="--model")
        models[name] = Path(path)
    try:
        results = evaluate(models, [Path(d) for d in test_dirs], Path(grid_dir), Path(out_dir), cfg)
    except (ShardError, CheckpointError, ParamsError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out_dir}: {e.strerror or e}") from None
    for name, r in results.items():
        if "factors" in r:
            az = r["factors"].get("azimuth", {}).get("abs_pearson")
            print(
                f"{name}: recon PSNR {r['reconstruction']['psnr']:.2f} dB, |corr(azimuth)| {az}, "
                f"MIG {r['disentanglement']['mig_continuous']:.3f}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
