"""Evaluation: models scored as what they are, protocols with known answers, the stage's outputs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import sweep_dirs
from stage_code import assert_deps_are_the_code

from dcign.checkpoint import load_model, trained_method
from pipeline.evaluation import calibration as C
from pipeline.evaluation import scoring as S
from pipeline.evaluation.encode import encode
from pipeline.evaluation.evaluate import main as evaluate_cli
from render.shards import RenderedDataset, load_dataset
from render.vocabulary import FACTORS

CFG = S.EvalConfig(bootstrap=200, mig_halves=4, score_samples=200, mig_samples=200, rerender_pairs=300, dci_trees=5)


# --- which latents a model is scored on ---------------------------------------------------------------
def test_the_method_comes_from_the_trainers_checkpoint(tiny_models, tmp_path):
    for name, method in (("dcign", "dcign"), ("baseline", "vae")):
        _, _, info = load_model(tiny_models / "models" / name)
        assert trained_method(info) == method
        # The weights file alone (no model.json beside it) records it too.
        alone = tmp_path / f"{name}.safetensors"
        alone.write_bytes((tiny_models / "models" / name / "model.safetensors").read_bytes())
        _, _, info = load_model(alone)
        assert "train_config" not in info and trained_method(info) == method


def sweep_dataset(codes_per_factor: dict[str, int], n_batches=6, b=10, d=8, seed=0):
    """Synthetic test sweeps whose factor f lives in latent codes_per_factor[f]; the rest is noise."""
    rng = np.random.default_rng(seed)
    sweeps, mus, angles = [], [], {f: [] for f in FACTORS}
    for f in (*FACTORS, "intrinsic"):
        for _ in range(n_batches):
            a = {g: np.full(b, rng.uniform(-20, 20)) for g in FACTORS}
            if f in FACTORS:
                a[f] = np.linspace(-80, 80, b)
            mu = rng.normal(0, 0.1, (b, d))
            for g, j in codes_per_factor.items():
                mu[:, j] += a[g] / 40
            mus.append(mu)
            sweeps.append(f)
            for g in FACTORS:
                angles[g].append(a[g])
    n = len(sweeps)
    ds = RenderedDataset(
        images=np.zeros((n, b, 4, 4), np.uint8),
        sweep=np.array(sweeps),
        **{g: np.array(angles[g], np.float32) for g in FACTORS},
        identity=np.arange(n * b).reshape(n, b),
        shape=np.zeros((n, b, 1), np.float32),
        albedo=np.zeros((n, b, 1), np.float32),
    )
    return np.concatenate(mus), ds


def test_a_baseline_gets_its_best_single_latent_per_factor_chosen_on_the_test_sweeps():
    mu, ds = sweep_dataset({"azimuth": 5, "elevation": 2, "light": 7})
    groups = {"azimuth": slice(0, 1), "elevation": slice(1, 2), "light": slice(2, 3), "intrinsic": slice(3, 8)}
    coords = S.factor_latents(False, groups, mu, ds)
    assert {f: int(coords[f]["latents"][0]) for f in FACTORS} == {"azimuth": 5, "elevation": 2, "light": 7}
    assert all(coords[f]["selection"].startswith("best single latent") for f in FACTORS)
    # A DC-IGN keeps its assigned groups, whatever the codes say.
    grouped = S.factor_latents(True, groups, mu, ds)
    assert {f: list(grouped[f]["latents"]) for f in FACTORS} == {"azimuth": [0], "elevation": [1], "light": [2]}
    assert list(S.index_groups(coords, 8)["intrinsic"]) == [0, 1, 3, 4, 6]


def test_the_baseline_in_the_stage_is_scored_on_latents_chosen_on_the_test_sweeps(tiny_eval):
    root, metrics = tiny_eval
    model, _, _ = load_model(root / "models" / "baseline")
    test = load_dataset(sweep_dirs(root, "test"))
    mu, _ = encode(model, test.images.reshape(-1, test.resolution, test.resolution))
    codes = mu.reshape(test.n_batches, test.batch_size, -1)
    b = metrics["baseline"]
    assert b["method"] == "vae"
    for f in FACTORS:
        sel = test.sweep == f
        x, v = codes[sel].reshape(-1, codes.shape[-1]), test.factor(f)[sel].ravel()
        r = [abs(np.corrcoef(x[:, j], v)[0, 1]) if x[:, j].std() > 0 else -1 for j in range(x.shape[1])]
        assert b["factors"][f]["latent_index"] == int(np.argmax(r)), f
        assert b["factors"][f]["selection"] == "best single latent on the test sweeps"
    d = metrics["dcign"]
    assert d["method"] == "dcign"
    assert [d["factors"][f]["latent_index"] for f in FACTORS] == [0, 1, 2]
    assert "intrinsic" in d["recognition"] and "intrinsic" not in b["recognition"]


# --- the stage's outputs ------------------------------------------------------------------------------
def test_metrics_hold_every_protocol_with_intervals(tiny_eval):
    root, metrics = tiny_eval
    on_disk = json.loads((root / "eval" / "metrics.json").read_text())
    assert set(on_disk) == {"dcign", "baseline", "pixels"}

    def within(d, key):
        v, lo, hi = d[key], d[f"{key}_lo"], d[f"{key}_hi"]
        assert lo is not None and hi is not None and lo <= hi, key
        if v is not None:
            assert lo - 1e-9 <= v <= hi + 1e-9 or key == "mig_continuous", key

    for name in ("dcign", "baseline"):
        m = on_disk[name]
        within(m["reconstruction"], "psnr")
        for f in FACTORS:
            within(m["factors"][f], "abs_pearson")
            for ref in ("edit", *S.REFERENCES):
                assert {"psnr", "ssim", "identity", "identity_lo", "identity_hi"} <= set(m["rerender"][f][ref])
            assert "psnr_margin" in m["rerender"][f]
        ident = m["recognition"]["whole"]["identification"]
        within(ident, "top1")
        assert {"delta_000_030", "delta_030_060", "delta_060_090"} <= set(ident)
        within(m["recognition"]["whole"]["verification"], "auc")
        dis = m["disentanglement"]
        assert set(dis["mig_per_factor"]) == {"identity", *FACTORS} and set(dis["mig_continuous_per_factor"]) == set(
            FACTORS
        )
        assert dis["mig_continuous_lo"] <= dis["mig_continuous_hi"]
        for key in ("dci_disentanglement", "dci_linear_disentanglement", "beta_vae_accuracy", "sap"):
            assert key in dis
        assert set(m["latents"]["n_active"]) == {"azimuth", "elevation", "light", "intrinsic", "total"}
    assert "auc" in on_disk["pixels"]["recognition"]["whole"]["verification"]


def test_kl_per_latent_is_in_the_metrics_and_sums_to_each_groups_kl(tiny_eval):
    root, _ = tiny_eval
    m = json.loads((root / "eval" / "metrics.json").read_text())["dcign"]["latents"]
    model, cfg, _ = load_model(root / "models" / "dcign")
    kl = m["kl_per_latent"]
    assert list(kl) == [f"z{j:02d}" for j in range(cfg.latent)]  # every latent, by column, as dvc metrics diff lists it
    assert all(v >= 0 for v in kl.values())
    per = np.array(list(kl.values()))
    for g in ("azimuth", "elevation", "light", "intrinsic"):
        assert per[model.groups[g]].sum() == pytest.approx(m["kl"][g], rel=1e-9, abs=1e-12), g
    assert per.sum() == pytest.approx(m["kl"]["total"], rel=1e-9)


def test_calibrations_are_written_for_every_model(tiny_eval):
    root, metrics = tiny_eval
    for name in ("dcign", "baseline"):
        model, cfg, _ = load_model(root / "models" / name)
        cal = C.load(root / "eval" / "calibration" / f"{name}.npz", cfg.latent)
        assert set(cal) == set(FACTORS)
        for f in FACTORS:
            assert int(cal[f].latents[0]) == metrics[name]["factors"][f]["latent_index"]
            lo, hi = cal[f].range
            assert lo <= -20 and hi >= 20  # the rendered range, not just the sweep's extreme draws
    assert (root / "eval" / "plots" / "images" / "dcign_rerender.png").stat().st_size > 0


def test_cli_errors_are_one_line(tiny_eval, tmp_path):
    root, _ = tiny_eval
    base = ["--params", str(root / "params.yaml"), "--grid", str(root / "data" / "grid")]
    base += [a for d in sweep_dirs(root, "test") for a in ("--test", str(d))]
    base += ["--train", str(root / "data" / "train" / "azimuth"), "--out", str(tmp_path / "eval")]
    cases = [
        (
            [
                "--model",
                "pixels=" + str(root / "models" / "dcign"),
                "--recognition",
                str(root / "data" / "recognition"),
            ],
            "other than 'pixels'",
        ),
        (
            ["--model", "dcign=" + str(root / "models" / "dcign"), "--recognition", str(tmp_path / "none")],
            "does not exist",
        ),
        (
            ["--model", "dcign=" + str(tmp_path / "nowhere"), "--recognition", str(root / "data" / "recognition")],
            "cannot read checkpoint",
        ),
    ]
    for extra, message in cases:
        r = CliRunner().invoke(evaluate_cli, base + extra)
        assert r.exit_code != 0 and message in r.output, r.output
        assert "Traceback" not in r.output
        assert not (tmp_path / "eval").exists() and not (tmp_path / "eval.partial").exists()


# --- protocols with known answers -----------------------------------------------------------------------
def recognition_set(n_ids=40, azimuths=(-90, -60, -30, 0, 30, 60, 90), seed=0):
    az = np.tile(np.array(azimuths, float), n_ids)
    ids = np.repeat(np.arange(n_ids), len(azimuths))
    return {"ids": ids, "azimuth": az, "dev": ids < n_ids // 2}, np.random.default_rng(seed)


def test_an_invariant_code_recognises_every_face_at_every_pose():
    split, rng = recognition_set()
    identity_code = rng.normal(size=(40, 12))
    r = S.recognition_scores(identity_code[split["ids"]] + rng.normal(0, 0.01, (len(split["ids"]), 12)), split, CFG)
    ident = r["identification"]
    assert ident["top1"] == 1.0 and all(ident[k]["top1"] == 1.0 for k in ident if k.startswith("delta_"))
    assert r["verification"]["auc"] == pytest.approx(1.0) and r["verification"]["accuracy"] > 0.95


def test_a_code_of_pure_pose_recognises_at_chance():
    split, rng = recognition_set(n_ids=200)
    pose_code = np.stack([np.sin(np.radians(split["azimuth"])), np.cos(np.radians(split["azimuth"]))], 1)
    r = S.recognition_scores(pose_code + rng.normal(0, 0.3, pose_code.shape), split, CFG)
    assert r["identification"]["top1"] < 0.05  # chance 1/100
    assert abs(r["verification"]["auc"] - 0.5) < 0.05


def oracle_grid(n_id=6, sizes=(3, 2, 2), seed=0):
    """A grid whose codes are its factor indices, with a decoder that renders the exact grid image."""
    rng = np.random.default_rng(seed)
    idx = np.array(np.meshgrid(*(np.arange(n) for n in (n_id, *sizes)), indexing="ij")).reshape(4, -1).T
    values = {f: np.linspace(-60, 60, n) for f, n in zip(FACTORS, sizes, strict=True)}
    flat = {f: values[f][idx[:, k + 1]] for k, f in enumerate(FACTORS)} | {"identity": idx[:, 0]}
    images = rng.integers(0, 256, size=(len(idx), 8, 8)).astype(np.uint8)
    lookup = {tuple(r): i for i, r in enumerate(idx)}
    mu = idx.astype(np.float32)

    def decode(z):
        return np.stack([images[lookup[tuple(np.rint(r).astype(int))]] for r in z]).astype(np.float32) / 255

    cal = {
        f: C.FactorCalibration(
            np.array([k + 1]),
            values[f],
            np.arange(len(values[f]), dtype=float)[:, None],
            np.arange(len(values[f]), dtype=float),
            values[f],
        )
        for k, f in enumerate(FACTORS)
    }
    return images, mu, idx, [n_id, *sizes], flat, decode, cal


def test_rerendering_with_a_perfect_code_preserves_identity_and_a_mean_image_does_not():
    images, mu, idx, sizes, flat, decode, cal = oracle_grid()
    angles = np.stack([flat[f] for f in FACTORS], 1)
    mean_image = S.MeanImage(images, angles, np.ptp(angles, axis=0), k=sizes[0])  # every face at that pose
    out, examples = S.rerender_scores(decode, images, mu, idx, sizes, flat, cal, mean_image, CFG)
    for f in FACTORS:
        assert out[f]["edit"]["identity"] == 1.0 and out[f]["truth_code"]["identity"] == 1.0
        assert out[f]["edit"]["psnr"] > 60  # the exact image
        assert abs(out[f]["mean_image"]["identity"] - 1 / sizes[0]) < 0.1  # a generic face: chance
        assert out[f]["psnr_margin"] > 10
        assert examples[f].shape[1] == 5


def test_calibration_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-80, 80, 400)
    codes = np.stack([rng.normal(size=400), np.tanh(angles / 60) + rng.normal(0, 0.02, 400)], 1)
    cal = C.fit({"azimuth": (codes, angles)}, {"azimuth": [1]}, {"azimuth": (-90, 90)})
    fa = cal["azimuth"]
    assert fa.range == (-90.0, 90.0)
    np.testing.assert_allclose(fa.code([0, 40]).ravel(), np.tanh(np.array([0, 40]) / 60), atol=0.05)
    np.testing.assert_allclose(fa.angle(np.tanh(np.array([-30, 30]) / 60)), [-30, 30], atol=6)
    C.save(tmp_path / "c.npz", cal)
    back = C.load(tmp_path / "c.npz", latent_dim=2)
    np.testing.assert_array_equal(back["azimuth"].codes, fa.codes)
    with pytest.raises(C.CalibrationError, match="outside the model's 1 latents"):
        C.load(tmp_path / "c.npz", latent_dim=1)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(C.CalibrationError, match="unreadable calibration file"):
        C.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", mu=np.zeros((2, 2)))
    with pytest.raises(C.CalibrationError, match="not a calibration file"):
        C.load(tmp_path / "other.npz")


def test_reconstruction_interval_contains_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.random((60, 8, 8)).astype(np.float32)
    recon = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    r = S.reconstruction_scores(x, recon, np.repeat(np.arange(20), 3), replace(CFG, bootstrap=300))
    assert r["psnr_lo"] < r["psnr"] < r["psnr_hi"] and 20 < r["psnr"] < 30


# --- the stage's deps list the code it runs -------------------------------------------------------------
def test_evaluate_stage_deps_list_the_code_it_runs():
    assert_deps_are_the_code("dvc.yaml", "evaluate", "pipeline.evaluation.evaluate")
