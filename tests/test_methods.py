"""The baseline methods: their loss terms against hand-computed values, and a few steps of each on real renders."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import sweep_dirs

from dcign.checkpoint import DISCRIMINATOR, load_model, trained_method
from dcign.cli import main
from dcign.config import GROUPED_METHODS, METHODS, ModelConfig, TrainConfig, load_config
from dcign.data import Schedule, load_training_data
from dcign.model import DCIGN
from dcign.objectives import (
    Discriminator,
    ada_gvae_posteriors,
    discriminator_loss,
    factor_tc,
    pair_kl,
    permute_dims,
    regulariser,
    shared_mask,
    tc_decomposition,
)
from dcign.train import train, train_step

BASELINES = ("beta_vae", "beta_tcvae", "factor_vae", "ada_gvae")
FILES = ("model.safetensors", "optimizer.pt", "model.json")


def log_normal(x: float, mean: float, var: float) -> float:
    return -0.5 * (math.log(2 * math.pi * var) + (x - mean) ** 2 / var)


# --- beta-TCVAE ------------------------------------------------------------------------------------------
def test_tc_decomposition_by_hand_in_one_dimension():
    """Two images, one latent, N = 2: every term from the formulas of Chen et al. 2018 written out."""
    mu, logvar = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [math.log(2.0)]])
    z = torch.tensor([[0.5], [1.5]])
    t = tc_decomposition(z, mu, logvar, dataset_size=2)
    var = (1.0, 2.0)
    own = [log_normal(0.5, 0, 1), log_normal(1.5, 1, 2)]  # log q(z_i | x_i)
    agg = [
        math.log(sum(math.exp(log_normal(zi, m, v)) for m, v in zip((0, 1), var, strict=True))) - math.log(4)
        for zi in (0.5, 1.5)
    ]  # log q(z_i) = logsumexp_j log q(z_i | x_j) - log(N M)
    prior = [log_normal(0.5, 0, 1), log_normal(1.5, 0, 1)]
    assert t["mi"].item() == pytest.approx(np.mean([a - b for a, b in zip(own, agg, strict=True)]), rel=1e-6)
    assert t["tc"].item() == pytest.approx(0.0, abs=1e-6)  # one latent: q(z) is its own product of marginals
    assert t["dwkl"].item() == pytest.approx(np.mean([a - b for a, b in zip(agg, prior, strict=True)]), rel=1e-6)


def test_tc_decomposition_with_unit_weights_is_the_kl_estimate():
    """mi + tc + dwkl telescopes to E[log q(z|x) - log p(z)], the one-sample KL estimate of the ELBO."""
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 4, generator=g), 0.5 * torch.randn(7, 4, generator=g)
    z = mu + torch.randn(7, 4, generator=g) * torch.exp(0.5 * logvar)
    t = tc_decomposition(z, mu, logvar, dataset_size=300)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    kl_estimate = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    assert (t["mi"] + t["tc"] + t["dwkl"]).item() == pytest.approx(kl_estimate.item(), rel=1e-5)
    cfg = TrainConfig(method="beta_tcvae", tcvae_alpha=1.0, tcvae_beta=1.0, tcvae_gamma=1.0)
    kl = torch.tensor(123.0)  # the analytic KL: beta-TCVAE's objective does not use it
    assert regulariser(cfg, kl, z, mu, logvar, 300).item() == pytest.approx(kl_estimate.item(), rel=1e-5)
    weighted = regulariser(replace(cfg, tcvae_beta=6.0), kl, z, mu, logvar, 300)
    assert weighted.item() == pytest.approx((t["mi"] + 6 * t["tc"] + t["dwkl"]).item(), rel=1e-5)


def test_tc_decomposition_of_a_single_image_is_all_dimension_wise_kl():
    mu, logvar, z = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.4]]), torch.tensor([[0.1, -0.8]])
    t = tc_decomposition(z, mu, logvar, dataset_size=1)
    assert t["mi"].item() == pytest.approx(0, abs=1e-6) and t["tc"].item() == pytest.approx(0, abs=1e-6)


# --- FactorVAE -------------------------------------------------------------------------------------------
def test_permutation_keeps_each_column_and_breaks_the_rows():
    z = torch.arange(24, dtype=torch.float32).reshape(8, 3)  # row i is (3i, 3i+1, 3i+2)
    rng = np.random.default_rng(0)
    perm = torch.from_numpy(np.argsort(rng.random((8, 3)), axis=0))  # as the schedule draws it
    zp = permute_dims(z, perm)
    for d in range(3):
        assert sorted(zp[:, d].tolist()) == sorted(z[:, d].tolist())  # the same multiset per column
    rows = {tuple(r) for r in z.tolist()}
    assert any(tuple(r) not in rows for r in zp.tolist())  # cross-column pairing broken
    hand = torch.tensor([[1, 0], [0, 1]])  # column 0 swapped, column 1 kept
    assert permute_dims(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), hand).tolist() == [[3.0, 2.0], [1.0, 4.0]]


def test_discriminator_terms_by_hand_and_their_gradients():
    disc = torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(disc.weight)
    with torch.no_grad():
        disc.bias.copy_(torch.tensor([1.0, 0.0]))  # D(z) = sigmoid(1) for every code
    z = torch.randn(5, 3, requires_grad=True)
    assert factor_tc(disc, z).item() == pytest.approx(1.0)  # log D / (1 - D) = logit_0 - logit_1
    expected = 0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.exp(1)))
    assert discriminator_loss(disc, z.detach(), z.detach()).item() == pytest.approx(expected, rel=1e-6)
    # The TC term trains the encoder only; the discriminator's loss trains the discriminator only.
    factor_tc(disc, z).backward()
    assert disc.weight.grad is None and z.grad is not None
    assert Discriminator(latent=3, hidden=8, layers=6)(torch.zeros(4, 3)).shape == (4, 2)
    assert sum(isinstance(m, torch.nn.Linear) for m in Discriminator(3, 8, 6).modules()) == 6


# --- Ada-GVAE --------------------------------------------------------------------------------------------
def test_ada_gvae_shares_the_latents_below_the_threshold_and_averages_them():
    mu1, mu2 = torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.1, 2.0, 3.0]])
    lv1 = torch.zeros(1, 4)
    lv2 = torch.tensor([[math.log(3.0), 0.0, 0.0, 0.0]])
    kl = pair_kl(mu1, lv1, mu2, lv2)
    # KL(N(0,1) || N(0,3)) = (log 3 + 1/3 - 1) / 2; then (mu1 - mu2)^2 / 2 with unit variances
    hand = [0.5 * (math.log(3) + 1 / 3 - 1), 0.005, 2.0, 4.5]
    assert kl[0].tolist() == pytest.approx(hand, rel=1e-5)
    # threshold (max + min) / 2 = (4.5 + 0.005) / 2: latents 0, 1, 2 shared, 3 not
    assert shared_mask(kl)[0].tolist() == [True, True, True, False]
    mu, lv = ada_gvae_posteriors(torch.cat([mu1, mu2]), torch.cat([lv1, lv2]))
    assert mu.flatten().tolist() == pytest.approx([0.0, 0.05, 1.0, 0.0, 0.0, 0.05, 1.0, 3.0])
    var = lv.exp()
    assert var[:, 0].tolist() == pytest.approx([2.0, 2.0])  # arithmetic mean of the variances 1 and 3
    assert var[:, 1:].flatten().tolist() == pytest.approx([1.0] * 6)


def test_ada_gvae_forward_decodes_the_averaged_posteriors():
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, filters=(4, 4), latent=6)).train()
    x, eps = torch.rand(4, 1, 16, 16), torch.zeros(4, 6)
    out = model(x, eps=eps, pairs=True)
    mu, logvar = model.encode(x)
    mu_avg, lv_avg = ada_gvae_posteriors(mu, logvar)
    assert torch.equal(out.mu, mu_avg) and torch.equal(out.logvar, lv_avg) and torch.equal(out.z, mu_avg)


# --- the objective in the training step ------------------------------------------------------------------
@pytest.mark.parametrize("method, weight", [("beta_vae", 4.0), ("vae", 1.0)])
def test_beta_vae_loss_is_recon_plus_beta_kl(method, weight):
    cfg = TrainConfig(method=method, precision="fp32", kl_weight=1.0, beta=4.0)
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, filters=(4, 4), latent=6))
    optimizer = torch.optim.Adam(model.parameters())
    batch = (torch.rand(4, 1, 16, 16), torch.randn(4, 6), None, None, None)
    loss, recon, kl, inv = train_step(model, optimizer, [batch], cfg)
    assert loss == pytest.approx(recon + weight * kl, rel=1e-6) and inv == 0


def test_methods_and_their_parameters_are_checked():
    assert set(BASELINES) <= set(METHODS) and not set(BASELINES) & set(GROUPED_METHODS)
    for m in BASELINES:
        assert TrainConfig(method=m).entangled
    assert [TrainConfig(method=m).batches for m in ("dcign", "vae", "factor_vae", "ada_gvae")] == [
        "sweep",
        "random",
        "random",
        "pairs",
    ]
    for bad in ({"beta": -1.0}, {"factor_lr": 0.0}, {"factor_layers": 0}, {"factor_hidden": 10**6}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad).validate()


# --- a few steps of each method on real renders ----------------------------------------------------------
def tiny_cfg(project, method: str, **kw) -> TrainConfig:
    cfg = load_config(project / "params.yaml")
    return replace(cfg, method=method, factor_hidden=32, factor_layers=3, threads=1, **kw)


def test_schedules_of_pairs_and_permutations(tiny_project):
    data = load_training_data(sweep_dirs(tiny_project, "train"))
    b = data.batch_size
    pairs = Schedule(data, {"azimuth": 1, "light": 1}, 0, 6, entangled=False, pairs=True)
    for step in range(5):
        s = pairs.slot(step, 0)
        assert s.active is None and len(s.images) == b - b % 2 and s.eps.shape == (len(s.images), 6)
        assert len(set(s.images // b)) == 1 and len(set(s.images)) == len(s.images)  # one render batch
    permuted = Schedule(data, {"azimuth": 1}, 0, 6, entangled=True, permutations=True)
    s = permuted.slot(0, 0)
    assert s.perm.shape == (b, 6) and all(sorted(s.perm[:, d]) == list(range(b)) for d in range(6))
    plain = Schedule(data, {"azimuth": 1}, 0, 6, entangled=True)
    assert np.array_equal(plain.slot(0, 0).eps, s.eps) and plain.slot(0, 0).perm is None  # drawn after the noise


@pytest.mark.parametrize("method", BASELINES)
def test_method_trains_records_itself_and_resumes_bit_identically(tiny_project, tmp_path, method):
    data = sweep_dirs(tiny_project, "train")
    cfg = tiny_cfg(tiny_project, method)
    summary = train(cfg, data, tmp_path / "straight")
    assert summary["method"] == method and summary["step"] == cfg.steps
    assert all(math.isfinite(v) for k, v in summary.items() if k.startswith("final_"))
    assert summary["final_invariance"] == 0
    _, _, info = load_model(tmp_path / "straight")
    assert trained_method(info) == method and info["train_config"]["method"] == method
    alone = tmp_path / "alone.safetensors"  # the weights file without its record carries the method too
    alone.write_bytes((tmp_path / "straight" / "model.safetensors").read_bytes())
    assert trained_method(load_model(alone)[2]) == method
    files = FILES + ((DISCRIMINATOR,) if method == "factor_vae" else ())
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == sorted(files)
    # three steps, then resumed to the end: the bytes of the uninterrupted run
    train(replace(cfg, steps=3), data, tmp_path / "resumed")
    train(cfg, data, tmp_path / "resumed", resume=True)
    for name in files:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_cli_trains_a_baseline_with_set_method(tiny_project, tmp_path):
    args = ["--params", str(tiny_project / "params.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]
    args += ["--set", "method=beta_tcvae", "--set", "steps=2", "--set", "threads=1"]
    args += [a for d in sweep_dirs(tiny_project, "train") for a in ("--data", str(d))]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["method"] == "beta_tcvae"
    assert trained_method(load_model(tmp_path / "out")[2]) == "beta_tcvae"


# --- the baselines pipeline ------------------------------------------------------------------------------
def test_baselines_pipeline_trains_every_method_with_the_default_stages_code():
    root = Path(__file__).resolve().parents[1]
    section = yaml.safe_load((root / "params.yaml").read_text())["baselines"]
    assert set(section["methods"]) == set(METHODS) and len(set(section["seeds"])) >= 3
    stages = yaml.safe_load((root / "baselines" / "dvc.yaml").read_text())["stages"]
    default = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    run = "baselines/${item.method}-${item.seed}"
    sweep = {name: stages.pop(name)["do"] for name in ("train-sweep", "evaluate-sweep")}
    for name, stage in stages.items():
        assert stage["matrix"] == {"method": "${baselines.methods}", "seed": "${baselines.seeds}"}, name
        assert stage["wdir"] == ".." and f"{run}/" in stage["cmd"]
    assert stages["train"]["deps"] == default["train-dcign"]["deps"]
    assert "--set method=${item.method} --set seed=${item.seed}" in stages["train"]["cmd"]
    evaluated = [d for d in default["evaluate"]["deps"] if not d.startswith("models/")]
    assert stages["evaluate"]["deps"] == [*evaluated, f"{run}/model"]
    # the sweep runs the same code, one run per entry of baselines.sweep, at its own seed
    assert sweep["train-sweep"]["deps"] == stages["train"]["deps"]
    assert "--set method=${item.method} --set ${item.param}=${item.value}" in sweep["train-sweep"]["cmd"]
    assert "--set seed=${baselines.sweep_seed}" in sweep["train-sweep"]["cmd"]
    assert sweep["evaluate-sweep"]["deps"] == [*evaluated, "baselines/sweep/${key}/model"]
    for entry in section["sweep"].values():
        assert entry["method"] in METHODS and isinstance(entry["value"], (int, float))


def test_evaluation_scores_every_baseline_without_groups(tiny_project, tmp_path):
    from pipeline.evaluation.evaluate import config_from_params, evaluate, load_data
    from render.params import load_params

    models = {}
    for method in BASELINES:
        train(tiny_cfg(tiny_project, method, steps=2), sweep_dirs(tiny_project, "train"), tmp_path / method)
        models[method] = tmp_path / method
    cfg = config_from_params(load_params(tiny_project / "params.yaml"))
    data_dir = tiny_project / "data"
    data = load_data(
        sweep_dirs(tiny_project, "test"),
        data_dir / "grid",
        data_dir / "recognition",
        sweep_dirs(tiny_project, "train"),
        cfg,
    )
    metrics = evaluate(models, data, tmp_path / "eval", cfg)
    for method in BASELINES:
        assert metrics[method]["method"] == method
        assert set(metrics[method]["recognition"]) == {"whole"}  # no intrinsic group to score alone
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(on_disk) == {*BASELINES, "pixels"}


def test_a_diverged_discriminator_stops_the_run_before_its_update(tiny_project, tmp_path, monkeypatch):
    import dcign.train

    real, calls = dcign.train.discriminator_loss, []

    def diverges_at_step_5(*args):
        calls.append(1)
        loss = real(*args)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(dcign.train, "discriminator_loss", diverges_at_step_5)
    with pytest.raises(
        dcign.train.TrainError, match=r"loss is nan at step 5; stopped, the last good checkpoint \(step 3\)"
    ):
        train(tiny_cfg(tiny_project, "factor_vae"), sweep_dirs(tiny_project, "train"), tmp_path / "out")
    assert load_model(tmp_path / "out")[2]["step"] == 3
