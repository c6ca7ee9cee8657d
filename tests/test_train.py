"""Training: checkpoints, exact resume, kills, errors, the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from dataset_fixtures import make_fake_dataset

import dcign.checkpoint
import dcign.train
from dcign.checkpoint import CheckpointError, load_model, recover
from dcign.cli import main
from dcign.config import ModelConfig, TrainConfig, default_params
from dcign.model import DCIGN, reconstruction_nll
from dcign.train import TrainError, decoder_step, train
from render.shards import ShardError

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> TrainConfig:
    base = TrainConfig(
        steps=6, checkpoint_every=3, log_every=1, precision="fp32", model=ModelConfig(filters=(4, 4, 4), latent=8)
    )
    return replace(base, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_fake_dataset(tmp_path_factory.mktemp("data"), n_batches=3, batch_size=4, resolution=16)


def weights(out: Path) -> dict:
    return load_model(out)[0].state_dict()


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def rows(live: Path, name="loss") -> list[list[str]]:
    return [ln.split("\t") for ln in (live / "plots/metrics/train" / f"{name}.tsv").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 6-step run, the reference for the resume tests."""
    root = tmp_path_factory.mktemp("straight")
    summary = train(tiny(), data, root / "out", live_dir=root / "live")
    return root, summary


def test_checkpoint_files_and_logs(straight):
    root, summary = straight
    out = root / "out"
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "model.json", "optimizer.pt"}
    model, cfg, info = load_model(out)
    assert info["step"] == 6 and cfg.resolution == 16 and info["train_config"]["steps"] == 6
    assert info["feature_size"] == 2 and info["groups"]["intrinsic"] == [3, 8]
    assert not model.training
    assert load_model(out / "model.safetensors")[2]["step"] == 6
    assert summary["step"] == 6 and summary["images_per_s"] > 0 and 0 <= summary["data_fraction"] < 1
    assert all(len(rows(root / "live", t)) == 6 for t in ("loss", "recon", "kl", "invariance"))
    assert [int(r[0]) for r in rows(root / "live")] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((root / "live/metrics.json").read_text())
    assert metrics["step"] == 6 and "images_per_s" in metrics


def test_checkpoint_bytes_depend_on_the_seed_only(data, straight, tmp_path):
    # safetensors orders several metadata keys at random; timings vary with the machine.
    for i in range(3):
        train(tiny(), data, tmp_path / f"out{i}")
        for name in ("model.safetensors", "model.json"):
            assert (tmp_path / f"out{i}" / name).read_bytes() == (straight[0] / "out" / name).read_bytes(), name


def test_weights_with_unpacked_metadata_still_load(straight, tmp_path):
    import safetensors.torch

    model, cfg, _ = load_model(straight[0] / "out")
    legacy = {"format": dcign.checkpoint.FORMAT, "step": "6", "model_config": json.dumps(cfg.to_dict())}
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors.torch.save(model.state_dict(), metadata=legacy))
    loaded, cfg2, info = load_model(path)
    assert info["step"] == 6 and cfg2 == cfg
    original = model.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in loaded.state_dict().items())


def test_resume_continues_exactly(data, straight, tmp_path):
    train(tiny(steps=3), data, tmp_path / "out", live_dir=tmp_path / "live")
    assert load_model(tmp_path / "out")[2]["step"] == 3
    train(tiny(), data, tmp_path / "out", resume=True, live_dir=tmp_path / "live")
    assert same_weights(tmp_path / "out", straight[0] / "out")
    assert rows(tmp_path / "live") == rows(straight[0] / "live")


def test_kill_before_a_checkpoint_loses_only_that_interval(data, straight, tmp_path, monkeypatch):
    real = dcign.train.save_checkpoint

    def dies_at_6(out_dir, model, opt, cfg, step, extra):
        if step == 6:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after step 5's log is written
        real(out_dir, model, opt, cfg, step, extra)

    monkeypatch.setattr(dcign.train, "save_checkpoint", dies_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), data, tmp_path / "out", live_dir=tmp_path / "live")
    monkeypatch.undo()
    assert load_model(tmp_path / "out")[2]["step"] == 3 and len(rows(tmp_path / "live")) == 6
    train(tiny(), data, tmp_path / "out", resume=True, live_dir=tmp_path / "live")
    assert same_weights(tmp_path / "out", straight[0] / "out")
    assert rows(tmp_path / "live") == rows(straight[0] / "live")  # rows 4-6 logged once, not twice


@pytest.mark.parametrize("fail_at, recovered_step", [("commit", 3), ("second_rename", 6)])
def test_interrupted_save_is_recovered(data, tmp_path, monkeypatch, fail_at, recovered_step):
    """A save killed before its commit record keeps the old checkpoint; one killed after it completes."""
    train(tiny(steps=3), data, tmp_path / "out")
    real_replace = os.replace

    def die_on_commit(path, obj):
        raise KeyboardInterrupt

    def die_on_second_rename(src, dst):
        if str(src).endswith("optimizer.pt.next"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    if fail_at == "commit":
        monkeypatch.setattr(dcign.checkpoint, "atomic_write_json", die_on_commit)
    else:
        monkeypatch.setattr(dcign.checkpoint.os, "replace", die_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), data, tmp_path / "out", resume=True)
    monkeypatch.undo()
    assert any(p.name.endswith(".next") for p in (tmp_path / "out").iterdir())
    if fail_at == "second_rename":  # new weights in place, new optimizer state still staged: not loadable as is
        with pytest.raises(CheckpointError):
            dcign.checkpoint.load_training_state(
                tmp_path / "out", json.loads((tmp_path / "out/model.json").read_text())
            )
    assert recover(tmp_path / "out")["step"] == recovered_step
    assert not any(p.name.endswith(".next") for p in (tmp_path / "out").iterdir())
    train(tiny(), data, tmp_path / "out", resume=True)
    assert load_model(tmp_path / "out")[2]["step"] == 6


@pytest.mark.slow
def test_sigkill_then_resume_matches_straight_run(data, tmp_path):
    """A real SIGKILL of the CLI mid-run, then --resume: same final weights as an uninterrupted run."""
    cfg = tiny(steps=80, checkpoint_every=10, log_every=50, threads=1)  # one thread: quick on a busy machine
    params = default_params(cfg)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [
        sys.executable,
        "-m",
        "dcign.cli",
        "--params",
        str(tmp_path / "params.yaml"),
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
        *[a for d in data for a in ("--data", str(d))],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    meta, deadline = tmp_path / "out/model.json", time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text())["step"] >= 20:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["step"]
    assert 20 <= killed_at < 80
    r = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    threads = torch.get_num_threads()
    try:
        train(cfg, data, tmp_path / "straight")
    finally:
        torch.set_num_threads(threads)
    assert load_model(tmp_path / "out")[2]["step"] == 80
    assert same_weights(tmp_path / "out", tmp_path / "straight")


def test_nan_loss_stops_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    real_terms, real_save, calls, saved = dcign.train.loss_terms, dcign.train.save_checkpoint, [], {}

    def poisoned(model, out, x, active, kl_clamped):
        calls.append(1)
        t = real_terms(model, out, x, active, kl_clamped)
        return {**t, "recon": t["recon"] * float("nan")} if len(calls) == 5 else t

    def save_and_keep(out_dir, *args):
        real_save(out_dir, *args)
        saved.update(
            {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name != dcign.train.LOCK}
        )  # held meanwhile

    monkeypatch.setattr(dcign.train, "loss_terms", poisoned)
    monkeypatch.setattr(dcign.train, "save_checkpoint", save_and_keep)
    with pytest.raises(TrainError, match=r"loss is nan at step 5; stopped, the last good checkpoint \(step 3\)"):
        train(tiny(), data, tmp_path / "out", live_dir=tmp_path / "live")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == saved  # step 3's files, untouched
    model, _, info = load_model(tmp_path / "out")
    assert info["step"] == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [int(r[0]) for r in rows(tmp_path / "live")] == [1, 2, 3, 4]  # nothing logged for the bad step


def test_existing_checkpoint_is_not_overwritten(data, straight):
    out = straight[0] / "out"
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(TrainError, match="already holds a checkpoint; pass --resume"):
        train(tiny(), data, out)
    assert (out / "model.safetensors").read_bytes() == before


def test_resume_refuses_other_resolution_or_settings(data, straight, tmp_path):
    out = straight[0] / "out"
    before = (out / "model.json").read_bytes()
    other = make_fake_dataset(tmp_path, sweeps=("azimuth",), n_batches=2, batch_size=4, resolution=32)
    with pytest.raises(TrainError, match=r"resolution mismatch: .* trained on 16x16 images, the data is 32x32"):
        train(tiny(steps=8), other, out, resume=True)
    with pytest.raises(TrainError, match=r"cannot resume .* lr=0.0005 \(now 0.001\)"):
        train(tiny(steps=8, lr=1e-3), data, out, resume=True)
    with pytest.raises(TrainError, match=r"latent=8 \(now 9\)"):
        train(tiny(steps=8, model=ModelConfig(filters=(4, 4, 4), latent=9)), data, out, resume=True)
    assert (out / "model.json").read_bytes() == before
    # a finished run resumed with the same steps does nothing
    assert train(tiny(), data, out, resume=True)["step"] == 6


def test_corrupt_checkpoint(data, tmp_path):
    train(tiny(steps=2), data, tmp_path / "out")
    w = tmp_path / "out/model.safetensors"
    w.write_bytes(w.read_bytes()[:-7] + b"garbage")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        train(tiny(steps=4), data, tmp_path / "out", resume=True)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model(tmp_path / "out")
    (tmp_path / "out/model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint record"):
        train(tiny(steps=4), data, tmp_path / "out", resume=True)
    (tmp_path / "alone.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(tmp_path / "alone.safetensors")


def test_unwritable_out_and_missing_data(data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="output directory is not writable"):
        train(tiny(), data, tmp_path / "file" / "out")
    with pytest.raises(ShardError, match="does not exist"):
        train(tiny(), [tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"method": "vae"},
        {"kl_clamped": True},
        {"clamp_grad": "mean"},
        {"clamp_to": "first"},
        {"own_recon": 1.0},
        {"own_recon": 0.5, "clamp_to": "first", "clamp_grad": "mean", "decoder_steps": 1},
        {"method": "vae", "decoder_steps": 1},
        {"decoder_steps": 1, "decoder_swap": 1.0},
        {"method": "vae", "decoder_steps": 1, "decoder_swap": 1.0},
        {"edit_recon": 1.0, "edit_share": 0.5},
        {"edit_recon": 1.0, "own_recon": 1.0, "decoder_steps": 1, "decoder_swap": 0.5},
        {"method": "vae", "edit_recon": 1.0},
        {"precision": "bf16"},
        {"batches_per_step": 2, "optimizer": "rmsprop"},
        {"channels_last": False, "model": ModelConfig(filters=(4, 4), latent=8, recon="bernoulli")},
        {"model": ModelConfig(filters=(4, 4, 4), latent=8, norm="none", conv_init="default")},  # the paper's network
        {"model": ModelConfig(filters=(4, 4, 4), latent=8, norm_groups=2)},
    ],
)
def test_variants_train(data, tmp_path, change):
    s = train(tiny(steps=2, checkpoint_every=5, **change), data, tmp_path / "out")
    assert s["step"] == 2 and all(math.isfinite(v) for k, v in s.items() if k.startswith("final_"))
    if change.get("method") == "vae":
        assert s["final_invariance"] == 0 and s["method"] == "vae"


def test_loss_decreases(data, tmp_path):
    s = train(tiny(steps=40, checkpoint_every=40, lr=3e-3), data, tmp_path / "out", live_dir=tmp_path / "live")
    first = float(rows(tmp_path / "live")[0][1])
    assert s["final_loss"] < 0.8 * first


def test_cli_end_to_end(data, tmp_path):
    params = default_params(tiny(steps=2))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--out",
        str(tmp_path / "out"),
        "--live-dir",
        str(tmp_path / "live"),
        "--no-progress",
        "--set",
        "method=vae",
        *[a for d in data for a in ("--data", str(d))],
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["method"] == "vae"
    assert load_model(tmp_path / "out")[2]["train_config"]["method"] == "vae"
    r = CliRunner().invoke(main, args)  # again without --resume: refused, one line
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "pass --resume" in r.output
    r = CliRunner().invoke(main, [*args, "--resume", "--set", "steps=3"])
    assert r.exit_code == 0 and load_model(tmp_path / "out")[2]["step"] == 3


def test_learning_rate_schedules_are_functions_of_the_step():
    constant = tiny(steps=10, lr=1e-3)
    assert [constant.lr_at(s) for s in (0, 5, 9)] == [1e-3] * 3
    cos = tiny(steps=10, lr=1e-3, lr_schedule="cosine", warmup_steps=2)
    lrs = [cos.lr_at(s) for s in range(10)]
    assert lrs[0] == 5e-4 and lrs[1] == 1e-3 and lrs[2] == 1e-3  # warm-up, then the peak
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] < 1e-4


def test_cosine_resume_continues_exactly_and_refuses_another_length(data, tmp_path, monkeypatch):
    cfg = tiny(lr_schedule="cosine", warmup_steps=2)
    train(cfg, data, tmp_path / "straight")
    real = dcign.train.save_checkpoint

    def dies_at_6(out_dir, model, opt, cfg_, step, extra):
        if step == 6:
            raise KeyboardInterrupt  # stands in for a kill after the step-3 checkpoint
        real(out_dir, model, opt, cfg_, step, extra)

    monkeypatch.setattr(dcign.train, "save_checkpoint", dies_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "out")
    monkeypatch.undo()
    with pytest.raises(TrainError, match="steps=6 \\(now 8\\)"):  # the schedule ends at `steps`
        train(replace(cfg, steps=8), data, tmp_path / "out", resume=True)
    train(cfg, data, tmp_path / "out", resume=True)
    assert same_weights(tmp_path / "out", tmp_path / "straight")


@pytest.fixture(scope="module")
def rendered_sweep(tmp_path_factory) -> Path:
    """A tiny azimuth sweep rendered by the renderer."""
    from render.engine import render_sweep
    from render.job import job_from_params

    out = tmp_path_factory.mktemp("rendered") / "azimuth"
    options = dict(resolution=16, samples=2, batch_size=4, batches_per_shard=2)
    render_sweep(job_from_params(None, "azimuth", "train", 4, **options), out, workers=1, progress=False)
    return out


@pytest.mark.slow  # renders with Blender
def test_kills_and_resumes_write_the_checkpoint_bytes_of_a_straight_run(rendered_sweep, tmp_path, monkeypatch):
    """Killed before the checkpoints of steps 4 and 6, resumed each time: model.safetensors,
    optimizer.pt and model.json (its final_* losses included) are the bytes of an uninterrupted run."""
    cfg = tiny(checkpoint_every=2)
    train(cfg, [rendered_sweep], tmp_path / "straight")
    real = dcign.train.save_checkpoint
    for kill_at in (4, 6):

        def dies(out_dir, model, opt, cfg_, step, extra, kill_at=kill_at):
            if step == kill_at:
                raise KeyboardInterrupt  # stands in for SIGKILL: the checkpoint of this step is never written
            real(out_dir, model, opt, cfg_, step, extra)

        monkeypatch.setattr(dcign.train, "save_checkpoint", dies)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, [rendered_sweep], tmp_path / "killed", resume=True)
        monkeypatch.undo()
    train(cfg, [rendered_sweep], tmp_path / "killed", resume=True)
    for name in ("model.safetensors", "optimizer.pt", "model.json"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_decoder_phase_freezes_the_encoder_and_fits_the_decoder(data, tmp_path):
    """The last decoder_steps leave the encoder where the clamped steps left it and change only the decoder."""
    train(tiny(steps=3), data, tmp_path / "clamped")
    s = train(tiny(steps=6, decoder_steps=3), data, tmp_path / "phase", live_dir=tmp_path / "live")
    before, after = weights(tmp_path / "clamped"), weights(tmp_path / "phase")
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.")]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert all(not torch.equal(before[k], after[k]) for k in decoder if k.endswith("weight"))
    # the phase has no invariance term
    assert [float(r[1]) for r in rows(tmp_path / "live", "invariance")][3:] == [0.0] * 3
    assert s["final_invariance"] > 0  # the window still holds the clamped steps


def test_decoder_swap_decodes_the_partners_code_with_the_own_active_group():
    """Known answer: the phase's loss is the NLL of decoder(own active group, partner's other groups)."""
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, filters=(4, 4), latent=6))
    cfg = TrainConfig(precision="fp32", steps=2, decoder_steps=1, decoder_swap=1.0)
    x, partner = torch.rand(4, 1, 16, 16), torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        mu, _ = model.encode(x)
        own = reconstruction_nll(model.config, model.decoder(mu), x).item()
        code = mu[partner].clone()
        code[:, 0] = mu[:, 0]  # azimuth, the active group, stays each image's own (latent 0: z_azimuth 1)
        swapped = reconstruction_nll(model.config, model.decoder(code), x).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, so both calls see one model
    assert decoder_step(model, opt, [(x, None, "azimuth", None, partner)], cfg)[1] == pytest.approx(swapped, rel=1e-6)
    assert decoder_step(model, opt, [(x, None, "azimuth", None, None)], cfg)[1] == pytest.approx(own, rel=1e-6)
    assert abs(swapped - own) > 1e-4 * abs(own)  # the partner's code is a different input


@pytest.mark.parametrize("swap, edit", [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0)])
def test_decoder_phase_resumes_exactly_and_refuses_another_length(data, tmp_path, monkeypatch, swap, edit):
    # steps 1-4 clamped, 5-6 the decoder phase; a checkpoint at 3
    cfg = tiny(decoder_steps=2, decoder_swap=swap, edit_recon=edit)
    train(cfg, data, tmp_path / "straight")
    real = dcign.train.save_checkpoint

    def dies_at_6(out_dir, model, opt, cfg_, step, extra):
        if step == 6:
            raise KeyboardInterrupt  # stands in for a kill inside the decoder phase
        real(out_dir, model, opt, cfg_, step, extra)

    monkeypatch.setattr(dcign.train, "save_checkpoint", dies_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "out")
    monkeypatch.undo()
    with pytest.raises(TrainError, match="steps=6 \\(now 8\\)"):  # the phase is the last decoder_steps
        train(replace(cfg, steps=8), data, tmp_path / "out", resume=True)
    train(cfg, data, tmp_path / "out", resume=True)
    assert same_weights(tmp_path / "out", tmp_path / "straight")


def test_encoder_filters_survive_the_checkpoint(data, tmp_path):
    cfg = tiny(steps=2, checkpoint_every=2, model=ModelConfig(filters=(4, 4, 4), encoder_filters=(8, 8, 4), latent=8))
    train(cfg, data, tmp_path / "out")
    model, mcfg, _ = load_model(tmp_path / "out")
    assert mcfg.encoder_filters == (8, 8, 4)
    assert [m.out_channels for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 8, 4]
