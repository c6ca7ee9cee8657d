"""Faults other than a kill, through the real commands (render, train, evaluate, fit): a write that
fails half-way (a file-size limit: EFBIG; a full disk: ENOSPC), an output folder made read-only
mid-run, SIGTERM and Ctrl-C, two renders (or two trainings) into one folder at once, and the Blender
temp folders of killed workers.

Each fault ends the command with one line and a non-zero exit, leaves no partial file, and a rerun
finishes with the bytes of an undisturbed run (a fit's records less their wall-clock seconds).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dcign.config import ModelConfig, TrainConfig, default_params

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
N = 60  # batches (one per shard) of the render tests: a few seconds, long enough to be stopped mid-way
RENDER = f"--sweep azimuth --batches {N} --batch-size 2 --batches-per-shard 1 --resolution 16 --samples 2 --quiet"


# --- helpers ---------------------------------------------------------------------------------------
def size_limit(n: int):
    """preexec_fn: a file-size limit of ``n`` bytes; SIGXFSZ ignored so the write fails with EFBIG."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    return limit


def start(cmd: list[str], tmp: Path | None = None, limit: int | None = None, **kw) -> subprocess.Popen:
    env = {**ENV, "TMPDIR": str(tmp)} if tmp else ENV
    pre = size_limit(limit) if limit else None
    return subprocess.Popen(
        cmd, env=env, preexec_fn=pre, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def run(cmd: list[str], tmp: Path | None = None, limit: int | None = None) -> tuple[int, str]:
    return finish(start(cmd, tmp, limit))


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the command ended before {path.name} appeared: {proc.stderr.read()[-500:]}"


def one_line(stderr: str, *expected: str) -> str:
    """The command's error: its last line, printable, short, naming what it should."""
    line = stderr.strip().splitlines()[-1]
    assert line.isprintable() and len(line) <= 300, line
    for text in expected:
        assert text in line, line
    assert "Traceback" not in stderr, stderr[-2000:]
    return line


def no_partial_files(folder: Path) -> None:
    """No temporary file of a write, no probe, no lock left behind."""
    if folder.exists():
        left = [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".lock")) or ".write-test-" in p.name]
        assert not left, left


def same_files(out: Path, reference: Path) -> None:
    """``out`` holds exactly the files of ``reference``, byte for byte."""
    names = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == names
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def render_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "render.cli", *RENDER.split(), "--out", str(out), "--workers", "1", *extra]


def stop_signal(signum: int) -> str:
    return signal.Signals(signum).name


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep rendered by the command, undisturbed."""
    out = tmp_path_factory.mktemp("reference") / "azimuth"
    rc, err = run(render_cmd(out))
    assert rc == 0, err
    return out


# --- render ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_render_write_failing_with_efbig_half_way_leaves_whole_shards_and_rerun_is_identical(reference, tmp_path):
    """A file-size limit above a shard's size: shards go through until the growing manifest hits it."""
    out = tmp_path / "azimuth"
    limit = (reference / "shard-00000.npz").stat().st_size + 1000
    rc, err = run(render_cmd(out), limit=limit)
    assert rc == 1
    one_line(err, f"{out / 'manifest.json'}: cannot write (File too large)")
    written = list(out.glob("shard-*.npz"))
    assert 1 <= len(written) < N
    assert all(p.read_bytes() == (reference / p.name).read_bytes() for p in written)  # whole, not cut short
    no_partial_files(out)
    rc, err = run(render_cmd(out))
    assert rc == 0, err
    same_files(out, reference)


def _mount(*args: str, tries: int = 1) -> None:
    for _ in range(tries):  # a remount read-only is refused while a write is open: the next try finds none
        r = subprocess.run(["mount", *args], capture_output=True, text=True)
        if not r.returncode:
            return
        time.sleep(0.01)
    if r.returncode:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {r.stderr.strip()[:120]})")


class ReadOnlyLater:
    """An output folder a test makes read-only mid-run: as root a bind mount of the folder on itself,
    remounted read-only (chmod does not stop root); otherwise chmod of the folder and ``subfolders``."""

    def __init__(self, out: Path, *subfolders: str):
        self.out, self.folders = out, [out, *(out / s for s in subfolders)]
        self.as_root = os.geteuid() == 0
        self.error = "Read-only file system" if self.as_root else "Permission denied"

    def __enter__(self) -> ReadOnlyLater:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            _mount("--bind", str(self.out), str(self.out))
        return self

    def freeze(self) -> None:
        if self.as_root:
            _mount("-o", "remount,bind,ro", str(self.out), tries=50)
        else:
            for d in self.folders:
                d.chmod(0o555)

    def thaw(self) -> None:
        if self.as_root:
            _mount("-o", "remount,bind,rw", str(self.out))
        else:
            for d in self.folders:
                d.chmod(0o755)

    def __exit__(self, *exc) -> None:
        if self.as_root:
            subprocess.run(["umount", "--lazy", str(self.out)], check=False)


def frozen_mid_run(proc: subprocess.Popen, first: Path, folder: ReadOnlyLater) -> tuple[int, str]:
    """Wait for ``first`` to be written, make the folder read-only, and let the command end."""
    try:
        wait_for(first, proc)
        folder.freeze()
    except BaseException:  # a skip too: the command must not outlive the test
        proc.kill()
        proc.wait()
        raise
    return finish(proc)


@pytest.mark.slow
def test_render_disk_full_half_way_leaves_whole_shards_and_rerun_is_identical(reference, tmp_path):
    """A small tmpfs as the output folder: ENOSPC part way through a shard or sidecar write."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    out = tmp_path / "azimuth"
    out.mkdir()
    _mount("-t", "tmpfs", "-o", "size=48k", "tmpfs", str(out))
    try:
        rc, err = run(render_cmd(out))
        assert rc == 1
        one_line(err, str(out), "cannot write (No space left on device)")
        written = list(out.glob("shard-*.npz"))
        assert 1 <= len(written) < N
        assert all(p.read_bytes() == (reference / p.name).read_bytes() for p in written)
        no_partial_files(out)
        _mount("-o", "remount,size=16m", str(out))  # space freed: the rerun completes
        rc, err = run(render_cmd(out))
        assert rc == 0, err
        same_files(out, reference)
    finally:
        subprocess.run(["umount", "--lazy", str(out)], check=False)


@pytest.mark.slow
def test_render_output_made_read_only_mid_run_stops_in_one_line_and_rerun_is_identical(reference, tmp_path):
    out = tmp_path / "azimuth"
    with ReadOnlyLater(out) as folder:
        rc, err = frozen_mid_run(start(render_cmd(out)), out / "shard-00002.json", folder)
        assert rc == 1
        one_line(err, str(out), folder.error)
        assert 3 <= len(list(out.glob("shard-*.npz"))) < N
        folder.thaw()
        # No temporary file; the lock file could not be removed while read-only: the rerun takes it over.
        assert [p.name for p in out.glob(".*")] in ([], [".render-0of1.lock"])
        rc, err = run(render_cmd(out))
        assert rc == 0, err
        no_partial_files(out)
        same_files(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_render_stops_cleanly_on_a_signal_and_rerun_is_identical(reference, tmp_path, signum):
    out, tmp = tmp_path / "azimuth", tmp_path / "tmp"
    tmp.mkdir()
    proc = start(render_cmd(out), tmp)
    wait_for(out / "shard-00002.json", proc)
    proc.send_signal(signum)
    rc, err = finish(proc)
    assert rc == 128 + signum
    one_line(err, f"dcign-render: stopped by {stop_signal(signum)};", "rerun the same command to resume")
    assert 3 <= len(list(out.glob("shard-*.npz"))) < N
    no_partial_files(out)
    assert not list(tmp.iterdir())  # Blender's session folder and the scratch folder went with the clean stop
    rc, err = run(render_cmd(out), tmp)
    assert rc == 0, err
    same_files(out, reference)


@pytest.mark.slow
def test_a_second_render_into_the_same_folder_is_refused_while_the_first_runs(reference, tmp_path):
    out = tmp_path / "azimuth"
    first = start(render_cmd(out))
    wait_for(out / "shard-00001.json", first)
    first.send_signal(signal.SIGSTOP)  # held mid-run while the second starts, however slow the machine
    try:
        rc, err = run(render_cmd(out))
    finally:
        first.send_signal(signal.SIGCONT)
    assert rc == 1
    one_line(err, f"{out}: process {first.pid} is already rendering this sweep here; wait for it to end")
    rc, err = finish(first)
    assert rc == 0, err
    no_partial_files(out)
    same_files(out, reference)


@pytest.mark.slow
def test_shard_parts_rendered_into_one_folder_at_once_complete_the_manifest(reference, tmp_path):
    """--shard 0/2 and 1/2 side by side: whichever finishes last writes the complete manifest."""
    out = tmp_path / "azimuth"
    parts = [start(render_cmd(out, "--shard", f"{i}/2")) for i in range(2)]
    for proc in parts:
        rc, err = finish(proc)
        assert rc == 0, err
    no_partial_files(out)
    same_files(out, reference)


@pytest.mark.slow
def test_blender_folders_of_killed_workers_are_removed_by_the_next_run(reference, tmp_path):
    """SIGKILL of the command and its two worker processes: Blender's session folders stay in the
    temp directory (inside the pool's folder, the workers' TMPDIR); the next run removes them, a
    worker killed before it marked its folder included, removes its own and finishes the sweep."""
    out, tmp = tmp_path / "azimuth", tmp_path / "tmp"
    tmp.mkdir()
    cmd = render_cmd(out)
    cmd[cmd.index("--workers") + 1] = "2"
    proc = start(cmd, tmp, start_new_session=True)
    wait_for(out / "shard-00002.json", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers
    proc.wait()
    assert len(list(tmp.rglob("blender_*"))) >= 2  # the workers' at least
    rc, err = run(cmd, tmp)
    assert rc == 0, err
    assert not list(tmp.rglob("blender_*")) and not list(tmp.glob("dcign-workers-*"))
    same_files(out, reference)


# --- train -----------------------------------------------------------------------------------------
STEPS = 120


def train_cmd(params: Path, data: Path, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "dcign.cli", "--params", str(params), "--data", str(data), "--out", str(out)]
    return [*cmd, "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained(reference, tmp_path_factory) -> tuple[Path, Path]:
    """(params.yaml, checkpoint folder) of an undisturbed training run of the command on the rendered sweep."""
    root = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(
        steps=STEPS,
        checkpoint_every=20,
        log_every=50,
        precision="fp32",
        threads=1,
        model=ModelConfig(filters=(4, 4, 4), latent=8),
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(default_params(cfg)))
    rc, err = run(train_cmd(params, reference, root / "out"))
    assert rc == 0, err
    return params, root / "out"


@pytest.mark.slow
def test_train_write_failing_with_efbig_stops_in_one_line_and_resume_is_identical(reference, trained, tmp_path):
    params, straight = trained
    out = tmp_path / "out"
    limit = (straight / "model.safetensors").stat().st_size // 2  # the first checkpoint's first file, half-way
    rc, err = run(train_cmd(params, reference, out), limit=limit)
    assert rc == 1
    one_line(err, f"{out / 'model.safetensors.next'}: cannot write (File too large)")
    no_partial_files(out)
    assert not out.exists() or not list(out.iterdir())  # nothing written, no empty folder either
    rc, err = run(train_cmd(params, reference, out, "--resume"))
    assert rc == 0, err
    same_files(out, straight)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_train_stops_cleanly_on_a_signal_and_resume_is_identical(reference, trained, tmp_path, signum):
    params, straight = trained
    out = tmp_path / "out"
    proc = start(train_cmd(params, reference, out))
    wait_for(out / "model.json", proc)
    proc.send_signal(signum)
    rc, err = finish(proc)
    assert rc == 128 + signum
    one_line(err, f"dcign-train: stopped by {stop_signal(signum)};")
    step = json.loads((out / "model.json").read_text())["step"]
    assert 20 <= step < STEPS
    no_partial_files(out)
    rc, err = run(train_cmd(params, reference, out, "--resume"))
    assert rc == 0, err
    same_files(out, straight)


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
def test_a_second_training_into_the_same_folder_is_refused_while_the_first_runs(reference, trained, tmp_path, resume):
    """Two trainings into one --out at once (with --resume too, which would continue the other's checkpoint):
    the second is refused in one line naming the folder and touches nothing; the first finishes undisturbed."""
    params, straight = trained
    out = tmp_path / "out"
    first = start(train_cmd(params, reference, out))
    wait_for(out / "model.json", first)
    first.send_signal(signal.SIGSTOP)  # held mid-run while the second starts, however slow the machine
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        rc, err = run(train_cmd(params, reference, out, *(["--resume"] if resume else [])))
        after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    finally:
        first.send_signal(signal.SIGCONT)
    assert rc == 1
    one_line(err, f"{out}: process {first.pid} is already training into this folder; wait for it to end")
    assert after == before
    rc, err = finish(first)
    assert rc == 0, err
    no_partial_files(out)
    same_files(out, straight)


# --- evaluate (the tiny project: rendered, trained, evaluated) -------------------------------
def evaluate_cmd(root: Path, out: Path) -> list[str]:
    from conftest import sweep_dirs

    cmd = [sys.executable, "-m", "pipeline.evaluation.evaluate", "--params", str(root / "params.yaml"), "--no-progress"]
    cmd += ["--model", f"dcign={root / 'models' / 'dcign'}", "--model", f"baseline={root / 'models' / 'baseline'}"]
    cmd += [a for d in sweep_dirs(root, "test") for a in ("--test", str(d))]
    cmd += [a for d in sweep_dirs(root, "train") for a in ("--train", str(d))]
    cmd += ["--grid", str(root / "data" / "grid"), "--recognition", str(root / "data" / "recognition")]
    return [*cmd, "--out", str(out)]


def test_evaluate_write_failing_with_efbig_leaves_no_output_and_rerun_is_identical(tiny_eval, tmp_path):
    root, _ = tiny_eval
    out = tmp_path / "eval"
    rc, err = run(evaluate_cmd(root, out), limit=2000)  # the first plot or latents file, half-way
    assert rc == 1
    one_line(err, "File too large")
    assert not out.exists() and not out.with_name("eval.partial").exists()
    rc, err = run(evaluate_cmd(root, out))
    assert rc == 0, err
    same_files(out, root / "eval")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_evaluate_stops_cleanly_on_a_signal_and_leaves_no_output(tiny_eval, tmp_path, signum):
    root, _ = tiny_eval
    out = tmp_path / "eval"
    proc = start(evaluate_cmd(root, out))
    wait_for(out.with_name("eval.partial"), proc)  # scoring has begun
    proc.send_signal(signum)
    rc, err = finish(proc)
    assert rc == 128 + signum
    one_line(err, f"dcign-evaluate: stopped by {stop_signal(signum)};")
    assert not out.exists() and not out.with_name("eval.partial").exists()


# --- fit (the tiny project's DC-IGN and calibration, a few held-out images) ------------------------
FIT_IMAGES = 8  # evenly spaced images of the tiny grid: long enough to be stopped mid-way


def fit_cmd(root: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.inverse.cli", str(root / "data" / "grid")]
    cmd += ["--checkpoint", str(root / "models" / "dcign"), "--limit", str(FIT_IMAGES), "--budget", "8"]
    return [*cmd, "--samples", "1", "--no-progress", "--out", str(out)]


def timeless(obj):
    """A fit's record less its wall-clock ``seconds``, the one field that differs between runs."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return obj


def same_fit(out: Path, reference: Path) -> None:
    """``out`` holds the files of ``reference``: pictures and traces byte for byte, records less their timings."""
    import csv

    names = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == names
    for name in names:
        a, b = out / name, reference / name
        if name.endswith(".json"):
            assert timeless(json.loads(a.read_text())) == timeless(json.loads(b.read_text())), name
        elif name == "fits.csv":  # column order too (a resumed fit once wrote its columns in another order)
            tables = [list(csv.reader(f.open())) for f in (a, b)]
            keep = [i for i, column in enumerate(tables[1][0]) if column != "seconds"]
            assert [[r[i] for i in keep] for r in tables[0]] == [[r[i] for i in keep] for r in tables[1]], name
        else:
            assert a.read_bytes() == b.read_bytes(), name


@pytest.fixture(scope="module")
def fitted(tiny_eval, tmp_path_factory) -> Path:
    """The fit of the command, undisturbed."""
    root, _ = tiny_eval
    out = tmp_path_factory.mktemp("fitted") / "fits"
    rc, err = run(fit_cmd(root, out))
    assert rc == 0, err
    assert len(list((out / "results").glob("*.json"))) == FIT_IMAGES
    return out


def first_fitted(fitted: Path) -> Path:
    """The result the fit writes first (images are fitted in name order)."""
    return min((fitted / "results").glob("*.json"))


def test_fit_write_failing_with_efbig_stops_in_one_line_and_rerun_is_identical(tiny_eval, fitted, tmp_path):
    root, _ = tiny_eval
    out = tmp_path / "fits"
    first = first_fitted(fitted)
    limit = first.stat().st_size // 2  # the pictures go through, the first image's result is cut half-way
    assert limit > max(p.stat().st_size for p in (fitted / "images").glob("*.png"))
    rc, err = run(fit_cmd(root, out), limit=limit)
    assert rc == 1
    one_line(err, f"{out / 'results' / first.name}: File too large")
    assert not list((out / "results").glob("*.json"))  # no result of the image that failed, whole or cut
    no_partial_files(out)
    rc, err = run(fit_cmd(root, out))
    assert rc == 0, err
    no_partial_files(out)
    same_fit(out, fitted)


def test_fit_output_made_read_only_mid_run_stops_in_one_line_and_rerun_is_identical(tiny_eval, fitted, tmp_path):
    root, _ = tiny_eval
    out = tmp_path / "fits"
    first = out / "results" / first_fitted(fitted).name
    with ReadOnlyLater(out, "results", "images") as folder:
        rc, err = frozen_mid_run(start(fit_cmd(root, out)), first, folder)
        assert rc == 1
        one_line(err, str(out), folder.error)
        assert 1 <= len(list((out / "results").glob("*.json"))) < FIT_IMAGES
        folder.thaw()
        no_partial_files(out)
        rc, err = run(fit_cmd(root, out))
        assert rc == 0, err
        assert "images already fitted" in err  # the results written before the fault are kept
        no_partial_files(out)
        same_fit(out, fitted)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_fit_stops_cleanly_on_a_signal_and_rerun_is_identical(tiny_eval, fitted, tmp_path, signum):
    root, _ = tiny_eval
    out = tmp_path / "fits"
    proc = start(fit_cmd(root, out))
    wait_for(out / "results" / first_fitted(fitted).name, proc)
    proc.send_signal(signum)
    rc, err = finish(proc)
    assert rc == 128 + signum
    one_line(err, f"dcign-fit: stopped by {stop_signal(signum)}; the results of the images fitted so far are kept")
    kept = len(list((out / "results").glob("*.json")))
    assert 1 <= kept < FIT_IMAGES and not (out / "fits.csv").exists()  # the tables come when every image is done
    no_partial_files(out)
    rc, err = run(fit_cmd(root, out))
    assert rc == 0, err
    assert f"{kept} of {FIT_IMAGES} images already fitted" in err
    same_fit(out, fitted)


# --- the stop handler itself --------------------------------------------------------------------------
def test_a_signal_inside_a_shielded_block_stops_the_command_right_after_it(capsys):
    """SIGTERM during evaluate's swap of its outputs: the swap finishes, then the command stops in one line."""
    from render.stopping import shielded, stop_on_signals

    steps = []
    with pytest.raises(SystemExit) as stop:
        with stop_on_signals("cmd", "the outputs"):
            with shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("swapped")  # the block goes on to its end
            steps.append("after")  # never reached: the stop comes as the block ends
    assert steps == ["swapped"] and stop.value.code == 128 + signal.SIGTERM
    assert (
        capsys.readouterr().err.strip()
        == "cmd: stopped by SIGTERM; the outputs are kept, rerun the same command to resume"
    )
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers from before the command are back
    with shielded():  # outside a command: nothing changes
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
