"""Where an edit loses the face: the re-render's identity taken apart, code by code.

An edit (``dcign-evaluate``'s re-rendering score) decodes the source image's code with one factor's
latents set to the calibrated code of the target angle; its identity is rank-1 identification of
the result among the grid's identities rendered at the target factors (pixel correlation, chance
1 / identities). Between the input and decode(mu_target) there are three things that can lose the
face, and each row below swaps one of them for the target's own:

- ``edit``: the paper's edit, as the evaluation scores it.
- ``true_factor``: the source code with the factor's latents taken from the target's own code
  (what the calibration's "code for this angle" costs).
- ``source_intrinsic``: the target's own code with the intrinsic group taken from the source (what
  the source's intrinsic code holds of the face at another pose: the edit's ceiling when the rest
  is right).
- ``truth_code``: decode(mu_target), the decoder's own ceiling.

and two edits that change how the source code is read, each a hypothesis about the gap:

- ``transported``: the edit, plus the mean path of every other latent along the factor (each test
  sweep batch's deviation from its own mean, kernel-regressed on the angle as the calibration's
  forward table; the source angle read from its code): if the intrinsic group carried the pose in
  the same way for every face, this would remove it.
- ``refined``: the edit of a refined source code: the intrinsic group fitted to the source image by
  maximum a posteriori (the decoder fixed, Adam, ``refine_steps``: 30 took most of 100's gain on the
  full profile's seed 1), analysis by synthesis where the
  encoder's single pass falls short.

Same pairs and identities as the evaluation (``scoring.rerender_plans`` with the same seed), each
figure with the evaluation's cluster-bootstrap interval over identities.

    python -m pipeline.evaluation.edit_anatomy --params params.yaml --model dcign=models/dcign \\
        --test data/test/azimuth --test data/test/elevation --test data/test/light --grid data/grid \\
        --json eval/edit_anatomy.json
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.evaluation import scoring as S
from render.atomic import atomic_write_json
from render.vocabulary import FACTORS

ROWS = ("input", "edit", "true_factor", "source_intrinsic", "truth_code", "transported", "refined")


def mean_paths(mu_test: np.ndarray, test, grid_flat: dict) -> dict[str, C.FactorCalibration]:
    """Per factor, the whole code's mean deviation from its sweep batch's mean as a function of the angle."""
    d = mu_test.shape[1]
    codes = mu_test.reshape(test.n_batches, test.batch_size, d)
    out = {}
    for f in FACTORS:
        batches = codes[test.sweep == f]  # (B, n, D)
        if not len(batches):
            continue
        dev = (batches - batches.mean(axis=1, keepdims=True)).reshape(-1, d)
        span = (float(grid_flat[f].min()), float(grid_flat[f].max()))
        out[f] = C.fit_factor(dev, test.factor(f)[test.sweep == f].ravel(), np.arange(d), span=span)
    return out


def refine_codes(model, z0: np.ndarray, images: np.ndarray, free: np.ndarray, steps: int, lr: float = 0.02):
    """(P, D) codes whose ``free`` latents are fitted to (P, R, R) images in [0, 1] by MAP; the rest stay.

    Objective per image: the model's reconstruction NLL plus the N(0, I) prior's 1/2 ||z||^2.
    """
    import torch

    from dcign.model import reconstruction_nll

    if steps == 0:
        return np.asarray(z0, dtype=np.float64)
    fixed = torch.tensor(np.asarray(z0), dtype=torch.float32)
    mask = torch.zeros(fixed.shape[1], dtype=torch.bool)
    mask[torch.as_tensor(free)] = True
    p = torch.nn.Parameter(fixed.clone())
    opt = torch.optim.Adam([p], lr=lr)
    x = torch.tensor(images, dtype=torch.float32)[:, None]  # (P, 1, R, R)
    model.eval()
    for _ in range(steps):
        opt.zero_grad()
        z = torch.where(mask, p, fixed)
        loss = reconstruction_nll(model.config, model.decoder(z), x) + 0.5 * z.pow(2).sum(1).mean()
        loss.backward()
        opt.step()
    return torch.where(mask, p, fixed).detach().double().numpy()


def edit_anatomy(model, method: str, data: dict, cfg: S.EvalConfig, refine_steps: int = 30) -> dict:
    """Identity (and PSNR) of every row of the module's docstring, per factor, for one model.

    ``data``: ``test`` (RenderedDataset of the factor sweeps), ``grid`` (the factor grid) and their
    images as ``test_images`` / ``grid_images`` (N, R, R) uint8.
    """
    from dcign.config import GROUPED_METHODS
    from pipeline.evaluation.encode import decode, encode

    test, grid_x = data["test"], data["grid_images"]
    idx, sizes, flat = S.grid_layout(data["grid"])
    mu_t, _ = encode(model, data["test_images"], cfg.encode_batch)
    mu_g, _ = encode(model, grid_x, cfg.encode_batch)
    coords = S.factor_latents(method in GROUPED_METHODS, model.groups, mu_t, test)
    intrinsic = S.index_groups(coords, mu_t.shape[1])["intrinsic"]
    calib = S.calibrate(mu_t, test, coords, flat)
    paths = mean_paths(mu_t, test, flat)
    lookup = {tuple(r): i for i, r in enumerate(idx)}
    x = grid_x.astype(np.float32) / 255.0
    out = {"method": method, "intrinsic_latents": int(len(intrinsic)), "refine_steps": refine_steps, "factors": {}}
    for k, (f, (src, tgt_val, keys)) in enumerate(
        zip(FACTORS, S.rerender_plans(idx, sizes, cfg.rerender_pairs, cfg.seed), strict=True), 1
    ):
        if f not in calib or sizes[k] < 2:
            continue
        cal = calib[f]
        target_angle = np.unique(flat[f])[tgt_val]
        tgt = np.array([lookup[tuple(r)] for r in keys])
        mu_s, mu_tgt = mu_g[src].astype(np.float64), mu_g[tgt].astype(np.float64)
        codes = {"edit": S.edit_codes(mu_s, cal, target_angle)}
        codes["true_factor"] = mu_s.copy()
        codes["true_factor"][:, cal.latents] = mu_tgt[:, cal.latents]
        codes["source_intrinsic"] = mu_tgt.copy()
        codes["source_intrinsic"][:, intrinsic] = mu_s[:, intrinsic]
        codes["truth_code"] = mu_tgt
        source_angle = cal.angle(mu_s[:, cal.latents[0]])  # read off the code, as a user's image would be
        moved = mu_s + paths[f].code(target_angle) - paths[f].code(source_angle)
        codes["transported"] = S.edit_codes(moved, cal, target_angle)
        refined = refine_codes(model, mu_s, x[src], intrinsic, refine_steps)
        codes["refined"] = S.edit_codes(refined, cal, target_angle)
        shown = {
            "input": x[src],
            **{name: decode(model, z.astype(np.float32), cfg.encode_batch) for name, z in codes.items()},
        }
        truth, candidates, true_id = x[tgt], x[S.candidate_rows(lookup, keys, sizes[0])], idx[src, 0]
        rows = {
            name: {
                **S.identity_kept(shown[name], candidates, true_id, cfg),
                "psnr": -10 * np.log10(float(((shown[name] - truth) ** 2).mean())),
            }
            for name in ROWS
        }
        out["factors"][f] = {**rows, "identity_chance": 1.0 / sizes[0], "pairs": int(len(src))}
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    type=click.Path(path_type=Path),
    help="evaluate: section (seed, pairs, bootstrap).",
)
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    required=True,
    metavar="NAME=DIR",
    help="A trained checkpoint (repeatable).",
)
@click.option(
    "--test",
    "test_dirs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Test sweep folder of a factor (repeatable): the calibration and the mean paths.",
)
@click.option("--grid", "grid_dir", required=True, type=click.Path(path_type=Path), help="The factor grid's folder.")
@click.option(
    "--refine-steps",
    default=30,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Adam steps of the refined row.",
)
@click.option(
    "--json",
    "json_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output JSON (written atomically).",
)
def main(params_path, model_specs, test_dirs, grid_dir, refine_steps, json_path):
    """Take each model's re-render identity apart (module docstring); write one JSON."""
    import torch
    from threadpoolctl import threadpool_limits

    from dcign.checkpoint import CheckpointError, load_model, trained_method
    from pipeline.evaluation.evaluate import config_from_params, expect_sweeps, flat_images
    from render.params import ParamsError, load_params
    from render.shards import ShardError
    from render.vocabulary import GRID, SWEEPS

    try:
        cfg = config_from_params(load_params(params_path))
        test = expect_sweeps("--test", test_dirs, SWEEPS)
        grid = expect_sweeps("--grid", [grid_dir], (GRID,))
    except (ParamsError, ShardError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    data = {"test": test, "grid": grid, "test_images": flat_images(test), "grid_images": flat_images(grid)}
    models, paths = {}, {}  # every checkpoint read before the first one is scored: a bad one fails at once
    for spec in model_specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in models:
            raise click.BadParameter(f"expected NAME=DIR with a new NAME, got {spec!r}", param_hint="--model")
        try:
            model, _, info = load_model(Path(path))
            models[name], paths[name] = (model, trained_method(info, path)), path
        except CheckpointError as e:
            raise click.ClickException(f"--model {spec}: {e}") from None
    torch.set_num_threads(1)  # the same bits on any machine's core count
    results = {}
    for name, (model, method) in models.items():
        with threadpool_limits(1):
            results[name] = edit_anatomy(model, method, data, cfg, refine_steps)
        click.echo(
            f"{name}: "
            + "; ".join(
                f"{f} edit {r['edit']['identity']:.3f} refined {r['refined']['identity']:.3f}"
                for f, r in results[name]["factors"].items()
            ),
            err=True,
        )
    atomic_write_json(
        json_path,
        {
            "date": dt.date.today().isoformat(),
            "models": paths,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
