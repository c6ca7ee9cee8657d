"""Renderer: one-variable sweeps, deterministic resumable shards, CLI errors (tiny renders)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from render import shards
from render.atomic import remove_stale_temporaries
from render.cli import main as render_cli
from render.cli import parse_shard_spec
from render.engine import render_sweep
from render.job import RenderJob, job_from_params
from render.sweeps import SweepConfig, batch_factors, grid_batches

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(resolution=16, samples=2, batches_per_shard=2)
CFG = SweepConfig(batch_size=4)
blender = pytest.mark.slow  # renders with Blender


def tiny_job(sweep="azimuth", n_batches=3, **kw) -> RenderJob:
    return RenderJob(sweep=sweep, n_batches=n_batches, sweep_cfg=kw.pop("sweep_cfg", CFG), **{**TINY, **kw})


# --- sweeps (pure numpy) ----------------------------------------------------------------------------
@pytest.mark.parametrize("sweep", ["azimuth", "elevation", "light", "shape", "texture", "intrinsic"])
def test_only_the_swept_variable_changes(sweep):
    f = batch_factors(7, sweep, 3, SweepConfig(batch_size=6), n_shape=5, n_albedo=4)
    changing = {k for k, v in f.items() if not np.all(v == v[:1])}
    expected = {
        "azimuth": {"azimuth"},
        "elevation": {"elevation"},
        "light": {"light"},
        "shape": {"shape", "identity"},
        "texture": {"albedo", "identity"},
        "intrinsic": {"shape", "albedo", "identity"},
    }[sweep]
    assert changing == expected


def test_swept_angles_are_stratified_sorted_and_within_range():
    cfg = SweepConfig(batch_size=10)
    for b in range(5):
        az = batch_factors(0, "azimuth", b, cfg, 3, 3)["azimuth"]
        assert np.all(np.diff(az) > 0)
        edges = np.linspace(-90, 90, 11)
        assert np.all((az >= edges[:-1]) & (az <= edges[1:]))  # one value per stratum


@pytest.mark.parametrize("fraction", [0.0, 0.6, 1.0])
def test_angles_not_swept_come_from_the_central_fixed_fraction_of_their_range(fraction):
    """render.fixed_fraction: held angles lie in centre +- fraction * half-range, and fill that band."""
    cfg = SweepConfig(batch_size=4, fixed_fraction=fraction)
    held = {"azimuth": [], "elevation": [], "light": []}
    for sweep in ("azimuth", "elevation", "light", "intrinsic"):
        for b in range(200):
            f = batch_factors(3, sweep, b, cfg, 3, 3)
            for name in held.keys() - {sweep}:
                held[name].append(float(f[name][0]))
    for name, values in held.items():
        lo, hi = cfg.ranges[name]
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * fraction
        v = np.asarray(values)
        assert np.all(np.abs(v - mid) <= half + 1e-4), name
        if fraction > 0:  # the draws reach the band's edges, not just its middle
            assert np.abs(v - mid).max() > 0.95 * half, name


def test_batches_are_a_pure_function_of_seed_sweep_and_index():
    a = batch_factors(1, "light", 5, CFG, 3, 3)
    b = batch_factors(1, "light", 5, CFG, 3, 3)
    c = batch_factors(1, "light", 6, CFG, 3, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["light"], c["light"])


def test_grid_covers_every_combination():
    cfg = SweepConfig(batch_size=3, grid=(2, 3, 2, 2))
    rows = [batch_factors(0, "grid", b, cfg, 3, 3) for b in range(grid_batches(cfg))]
    combos = {
        (int(r["identity"][i]), float(r["azimuth"][i]), float(r["elevation"][i]), float(r["light"][i]))
        for r in rows
        for i in range(3)
    }
    assert len(combos) == 2 * 3 * 2 * 2
    # One identity keeps one face in every grid batch.
    same_id = [r for r in rows if r["identity"][0] == rows[0]["identity"][0]]
    assert all(np.array_equal(r["shape"], same_id[0]["shape"]) for r in same_id)


@pytest.mark.parametrize("bad", ["3/2", "a/b", "1/0", "-1/2", "1", "1/2/3"])
def test_bad_shard_specs_are_rejected(bad):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard_spec(bad)


def test_sweep_config_rejects_inverted_ranges():
    with pytest.raises(ValueError, match="ranges.azimuth"):
        SweepConfig(ranges={"azimuth": (10, -10), "elevation": (0, 1), "light": (0, 1)}).validate()


def test_only_stale_temporaries_are_removed(tmp_path):
    killed = tmp_path / ".manifest.json.k1.tmp"  # a write killed an hour ago
    killed.write_text("partial")
    os.utime(killed, (time.time() - 3600,) * 2)
    live = tmp_path / ".shard-00003.npz.k2.tmp"  # another process writing now
    live.write_text("partial")
    shard = tmp_path / "shard-00000.npz"
    shard.write_text("done")
    assert remove_stale_temporaries(tmp_path, before=time.time() - 60) == [killed]
    assert live.exists() and shard.exists() and not killed.exists()


def test_scratch_folders_of_dead_processes_are_removed(tmp_path):
    from render.atomic import remove_orphaned_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    orphan = tmp_path / f"dcign-render-{dead.pid}-abc"
    mine = tmp_path / f"dcign-render-{os.getpid()}-def"
    old_legacy, new_legacy = tmp_path / "dcign-render-oldname1", tmp_path / "dcign-render-newname2"
    for d in (orphan, mine, old_legacy, new_legacy):
        d.mkdir()
        (d / "frame.png").write_bytes(b"png")
    os.utime(old_legacy, (time.time() - 2 * 86400,) * 2)
    assert sorted(remove_orphaned_scratch(tmp_path, "dcign-render")) == sorted([orphan, old_legacy])
    assert mine.exists() and new_legacy.exists() and not orphan.exists() and not old_legacy.exists()


def test_blender_session_folders_of_dead_processes_are_removed(tmp_path):
    from render.atomic import BLENDER_OWNER, claim_blender_session

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    orphan, live, unmarked = (tmp_path / f"blender_{name}" for name in ("dead01", "live02", "other3"))
    for d, owner in ((orphan, dead.pid), (live, os.getppid()), (unmarked, None)):
        d.mkdir()
        if owner is not None:
            (d / BLENDER_OWNER).write_text(str(owner))
    mine = tmp_path / "blender_mine04"  # this process's, as Blender just made it
    mine.mkdir()
    claim_blender_session(f"{mine}/")  # bpy.app.tempdir ends with a slash
    assert not orphan.exists() and live.exists() and unmarked.exists()
    assert (mine / BLENDER_OWNER).read_text() == str(os.getpid())


def test_a_corrupt_shard_is_named_in_one_short_printable_line(tmp_path):
    path = tmp_path / shards.shard_name(0)
    shards.write_shard(path, {"images": np.zeros((2, 4, 4), np.uint8)})
    data = bytearray(path.read_bytes())
    data[26:28] = (400).to_bytes(2, "little")  # the first entry's name length: zipfile quotes 400 bytes of the shard
    path.write_bytes(bytes(data))
    with pytest.raises(shards.ShardError) as info:
        shards.load_shard(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable shard (File name in directory")
    assert message.isprintable() and len(message) - len(str(path)) <= 200


def test_a_failed_run_removes_only_the_empty_folders_it_created(tmp_path):
    from render.atomic import removed_if_failed_empty

    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), removed_if_failed_empty(out):
        out.mkdir(parents=True)
        raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    with pytest.raises(RuntimeError), removed_if_failed_empty(kept):
        kept.mkdir()
        (kept / "shard-00000.npz").write_bytes(b"work done before the failure")
        raise RuntimeError("failed after writing")
    assert (kept / "shard-00000.npz").exists()


# --- rendering with Blender ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "azimuth"
    summary = render_sweep(tiny_job(), out, workers=1, progress=False)
    return out, summary


@blender
def test_render_writes_manifest_and_shards(rendered):
    out, summary = rendered
    assert summary["complete"] and summary["rendered_shards"] == 2
    assert 0 < summary["render_seconds"] <= summary["seconds"] and summary["images_per_s"] > 0
    data = shards.load_sweep_dir(out)
    assert data["images"].shape == (3, 4, 16, 16) and data["images"].dtype == np.uint8
    assert list(data["batch_index"]) == [0, 1, 2]
    # Real renders: a face in front of the background, and the swept view changes the pixels.
    imgs = data["images"].astype(int)
    assert imgs.std() > 5
    assert np.abs(imgs[0, 0] - imgs[0, -1]).mean() > 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["resolution"] == 16 and manifest["versions"]["blender"].startswith("4.5")


@blender
def test_rerun_skips_and_repairs_corrupt_shards_identically(rendered, tmp_path):
    out, _ = rendered
    copy = shutil.copytree(out, tmp_path / "copy")
    original = (out / "shard-00001.npz").read_bytes()
    assert render_sweep(tiny_job(), copy, workers=1, progress=False)["rendered_shards"] == 0
    # Simulate a kill mid-write and a bit flip: both get re-rendered to identical bytes.
    (copy / "shard-00001.npz").write_bytes(original[:100])
    summary = render_sweep(tiny_job(), copy, workers=1, progress=False)
    assert summary["rendered_shards"] == 1 and summary["repaired_shards"] == 1
    assert (copy / "shard-00001.npz").read_bytes() == original


@blender
def test_a_sidecar_that_is_not_an_object_is_repaired(rendered, tmp_path):
    out, _ = rendered
    copy = shutil.copytree(out, tmp_path / "copy")
    (copy / "shard-00001.json").write_text(json.dumps([json.loads((out / "shard-00001.json").read_text())]))
    summary = render_sweep(tiny_job(), copy, workers=1, progress=False)
    assert summary["rendered_shards"] == 1 and summary["repaired_shards"] == 1
    assert (copy / "shard-00001.npz").read_bytes() == (out / "shard-00001.npz").read_bytes()
    assert json.loads((copy / "shard-00001.json").read_text()) == json.loads((out / "shard-00001.json").read_text())


@blender
def test_two_workers_and_machine_shards_give_identical_bytes(rendered, tmp_path):
    out, _ = rendered
    parts = tmp_path / "parts"
    render_sweep(tiny_job(), parts, workers=1, shard=(1, 2), progress=False)
    assert not shards.read_manifest(parts)["complete"]
    with pytest.raises(shards.ShardError, match="incomplete"):
        shards.load_sweep_dir(parts)
    render_sweep(tiny_job(), parts, workers=1, shard=(0, 2), progress=False)
    pool = tmp_path / "pool"
    assert render_sweep(tiny_job(), pool, workers=2, progress=False)["rendered_shards"] == 2  # two processes
    for name in ("shard-00000.npz", "shard-00001.npz"):
        assert (parts / name).read_bytes() == (out / name).read_bytes()
        assert (pool / name).read_bytes() == (out / name).read_bytes()
    assert shards.read_manifest(parts)["complete"]


@blender
def test_output_rendered_with_other_params_is_refused(rendered):
    out, _ = rendered
    with pytest.raises(shards.ShardError, match="different params"):
        render_sweep(tiny_job(seed=99), out, workers=1, progress=False)


@blender
def test_checksum_mismatch_is_never_loaded_silently(rendered, tmp_path):
    out, _ = rendered
    copy = shutil.copytree(out, tmp_path / "c")
    raw = bytearray((copy / "shard-00000.npz").read_bytes())
    raw[-10] ^= 0xFF
    (copy / "shard-00000.npz").write_bytes(bytes(raw))
    with pytest.raises(shards.ShardError, match="checksum"):
        shards.load_sweep_dir(copy)


# --- CLI ------------------------------------------------------------------------------------------------
def run_cli(*args):
    return CliRunner().invoke(render_cli, list(args))


@blender
def test_cli_renders_and_previews(tmp_path):
    out = tmp_path / "light"
    tiny = "--batch-size 3 --resolution 16 --samples 2".split()
    r = run_cli("--sweep", "light", "--batches", "2", *tiny, "--out", str(out), "--quiet", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert shards.load_sweep_dir(out)["images"].shape == (2, 3, 16, 16)
    png = tmp_path / "sheet.png"
    r = run_cli("preview", "--data", str(out), "--batches", "2", "-o", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    fresh = tmp_path / "fresh.png"
    r = run_cli("preview", "--sweep", "elevation", "--sweep", "texture", *tiny, "-o", str(fresh))
    assert r.exit_code == 0 and "2 rows" in r.output, r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sweep", "zoom", "--batches", "1", "--out", "x"], "zoom"),
        (["--sweep", "azimuth", "--batches", "0", "--out", "x"], "positive"),
        (["--sweep", "azimuth", "--batches", "-2", "--out", "x"], "positive"),
        (["--sweep", "azimuth", "--batches", "1", "--resolution", "0", "--out", "x"], "positive"),
        (["--sweep", "azimuth", "--batches", "1", "--shard", "3/2", "--out", "x"], "--shard"),
        (["--sweep", "azimuth", "--batches", "1", "--shard", "a/b", "--out", "x"], "--shard"),
        (["--sweep", "azimuth", "--batches", "1", "--model", "no/such/model.mat", "--out", "x"], "model.mat"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = run_cli(*args)
    assert r.exit_code != 0
    assert message in r.output
    assert not Path("x").exists()


def test_cli_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli("--sweep", "azimuth", "--batches", "1", "--out", str(blocker / "sub"), "--resolution", "16")
    assert r.exit_code != 0 and "not writable" in r.output


def test_cli_params_errors_name_the_parameter(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "seed: 0\nrender:\n  resolution: 16\n  samples: 2\n  batch_size: 4\n  batches_per_shard: 2\n"
        "  test_seed_offset: 5\n  ranges: {azimuth: [90, -90], elevation: [-5, 5], light: [-5, 5]}\n"
        "  train_batches: {azimuth: 1}\n"
    )
    r = run_cli("--params", str(params), "--sweep", "azimuth", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and f"Error: {params}: render.ranges.azimuth has min > max (90.0 > -90.0)" in r.output
    params.write_text("seed: 0\nrender:\n  resolution: -1\n  train_batches: {azimuth: 1}\n")
    r = run_cli("--params", str(params), "--sweep", "azimuth", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and f"Error: {params}: render.resolution must be positive, got -1" in r.output
    params.write_text("seed: 0\nrender:\n  resolution: 16\n")
    r = run_cli("--params", str(params), "--sweep", "light", "--split", "test", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "render.test_batches.light is missing" in r.output
    assert not (tmp_path / "o").exists()


@blender
def test_sigkill_then_rerun_is_byte_identical(tmp_path):
    """A render killed by SIGKILL while it runs, then rerun: the shards of an uninterrupted render."""
    n = 24
    options = dict(resolution=16, samples=2, batch_size=4, batches_per_shard=1)
    flags = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    target, tmp = tmp_path / "killed", tmp_path / "tmp"
    cmd = [sys.executable, "-m", "render.cli", "--sweep", "azimuth", "--batches", str(n), *flags]
    cmd += ["--out", str(target), "--workers", "1", "--quiet"]
    tmp.mkdir()  # the temp directory of both runs, where Blender makes its session folder
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (target / "shard-00000.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the render ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(list(target.glob("shard-*.json"))) < n  # killed part way
    assert list(tmp.glob("blender_*"))  # the kill skipped Blender's clean-up

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["complete"] and summary["skipped_shards"] >= 1 and summary["rendered_shards"] >= 1
    assert not list(tmp.glob("blender_*"))  # the rerun removed the killed run's folder, then its own
    straight = tmp_path / "straight"
    render_sweep(job_from_params(None, "azimuth", "train", n, **options), straight, workers=1, progress=False)
    names = sorted(p.name for p in straight.glob("shard-*.npz"))
    assert len(names) == n and sorted(p.name for p in target.glob("shard-*.npz")) == names
    assert all((target / name).read_bytes() == (straight / name).read_bytes() for name in names)
    assert not list(target.glob(".*.tmp"))


@blender
def test_every_worker_count_sharding_and_repair_give_the_same_bytes(tmp_path):
    """The same sweep by the command, as users run it: one worker, two, three --shard parts, and a
    copy with one shard cut short and one deleted, repaired. Every shard and every manifest entry
    is the same bytes (each process renders its faces with one BLAS thread)."""
    n = 8
    flags = "--sweep azimuth --batches 8 --batch-size 2 --batches-per-shard 1 --resolution 16 --samples 2 --quiet"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def render(out: Path, *extra: str) -> None:
        cmd = [sys.executable, "-m", "render.cli", *flags.split(), "--out", str(out), *extra]
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=900)

    render(tmp_path / "one", "--workers", "1")
    render(tmp_path / "two", "--workers", "2")
    for i in range(3):
        render(tmp_path / "parts", "--workers", "1", "--shard", f"{i}/3")
    repaired = shutil.copytree(tmp_path / "one", tmp_path / "repaired")
    (repaired / "shard-00001.npz").write_bytes((repaired / "shard-00001.npz").read_bytes()[:200])
    (repaired / "shard-00005.npz").unlink()
    render(repaired, "--workers", "1")

    reference = tmp_path / "one"
    names = [shards.shard_name(k) for k in range(n)]
    for other in ("two", "parts", "repaired"):
        for name in names:
            assert (tmp_path / other / name).read_bytes() == (reference / name).read_bytes(), (other, name)
        assert shards.read_manifest(tmp_path / other)["shards"] == shards.read_manifest(reference)["shards"], other
