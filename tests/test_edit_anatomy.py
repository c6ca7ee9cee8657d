"""The re-render's identity taken apart: known answers, the refinement's objective, and the command on
the tiny project (its edit, input and decode(mu_target) rows are the evaluation's own figures)."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from conftest import sweep_dirs
from test_evaluate import sweep_dataset

from dcign.checkpoint import load_model
from dcign.model import reconstruction_nll
from pipeline.evaluation.edit_anatomy import ROWS, main, mean_paths, refine_codes
from pipeline.evaluation.encode import encode
from render.shards import load_dataset
from render.vocabulary import FACTORS


def test_mean_paths_recover_a_latent_that_follows_the_angle():
    # Latent 5 carries azimuth / 40 in every azimuth batch (the batches sweep -80 ... 80 around mean 0).
    mu, ds = sweep_dataset({"azimuth": 5, "elevation": 2, "light": 7}, n_batches=12)
    flat = {f: np.array([-90.0, 90.0]) for f in FACTORS}
    path = mean_paths(mu, ds, flat)["azimuth"]
    np.testing.assert_allclose(path.code([-40.0, 0.0, 40.0])[:, 5], [-1.0, 0.0, 1.0], atol=0.05)
    others = np.delete(path.code(40.0), 5)
    assert np.abs(others).max() < 0.05  # noise only: nothing else moves with azimuth


def test_refine_codes_fit_the_free_latents_only_and_lower_the_objective(tiny_models):
    model, _, _ = load_model(tiny_models / "models" / "dcign")
    grid = load_dataset([tiny_models / "data" / "grid"])
    x = grid.images.reshape(-1, grid.resolution, grid.resolution)[:8]
    z0 = encode(model, x)[0].astype(np.float64)
    free = np.arange(3, z0.shape[1])  # the intrinsic group

    def objective(z):
        zt = torch.tensor(z, dtype=torch.float32)
        with torch.no_grad():
            nll = reconstruction_nll(
                model.config, model.decoder(zt), torch.tensor(x / 255.0, dtype=torch.float32)[:, None]
            )
        return float(nll + 0.5 * zt.pow(2).sum(1).mean())

    np.testing.assert_array_equal(refine_codes(model, z0, x / 255.0, free, 0), z0)
    z = refine_codes(model, z0, x / 255.0, free, 30)
    np.testing.assert_array_equal(z[:, :3], z0[:, :3].astype(np.float32))
    assert not np.allclose(z[:, free], z0[:, free])
    assert objective(z) < objective(z0)


def test_the_command_writes_every_row_and_agrees_with_the_evaluation(tiny_eval, tmp_path):
    root, metrics = tiny_eval
    out = tmp_path / "anatomy.json"
    tests = [a for d in sweep_dirs(root, "test") if d.name in FACTORS for a in ("--test", str(d))]
    r = CliRunner().invoke(
        main,
        ["--params", str(root / "params.yaml"), "--model", f"dcign={root / 'models' / 'dcign'}", *tests]
        + ["--grid", str(root / "data" / "grid"), "--refine-steps", "5", "--json", str(out)],
    )
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())["results"]["dcign"]
    assert result["method"] == "dcign" and result["refine_steps"] == 5
    for f in FACTORS:
        rows = result["factors"][f]
        for name in ROWS:
            assert 0 <= rows[name]["identity_lo"] <= rows[name]["identity"] <= rows[name]["identity_hi"] <= 1
        # The same pairs, codes and identification as dcign-evaluate's re-rendering score.
        for name in ("input", "edit", "truth_code"):
            assert abs(rows[name]["identity"] - metrics["dcign"]["rerender"][f][name]["identity"]) <= 1 / rows["pairs"]


def test_the_command_names_a_bad_model_in_one_line(tiny_project, tmp_path):
    r = CliRunner().invoke(
        main,
        ["--params", str(tiny_project / "params.yaml"), "--model", f"m={tmp_path / 'none'}"]
        + ["--test", str(tiny_project / "data" / "test" / "azimuth"), "--grid", str(tiny_project / "data" / "grid")]
        + ["--json", str(tmp_path / "a.json")],
    )
    assert r.exit_code != 0 and "--model m=" in r.output and not (tmp_path / "a.json").exists()
