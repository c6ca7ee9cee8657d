"""Render a sweep into resumable, checksummed shards.

Shard ``k`` holds batches ``[k * per_shard, (k + 1) * per_shard)``. Every shard is
written atomically, then its sidecar ``shard-k.json`` (checksum, batch range,
config), then the manifest is rebuilt from the sidecars (:mod:`render.manifest`). A
rerun verifies what is there, skips complete shards and renders the rest; a killed run
therefore resumes, and since a batch is a pure function of (seed, sweep, batch index)
the result is byte-identical to an uninterrupted run, and the temporary files of writes the
kill interrupted are removed. ``shard=(i, n)`` renders only shards with ``k % n == i``, so
several machines can fill one directory.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from tqdm import tqdm

from render import shards, stopping
from render.atomic import check_writable, exclusive, folder_lock, remove_stale_temporaries, removed_if_failed_empty
from render.faces.loaders import load_face_model
from render.job import RenderJob, job_config, model_fingerprint
from render.manifest import adopt_finished, record_shard, scan, software_versions, write_manifest
from render.pool import allowed_cores
from render.renderer import Renderer
from render.shards import ShardError


def render_sweep(
    job: RenderJob,
    out_dir: Path,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    restart_every: int = 2000,
) -> dict:
    """Render (or finish rendering) one sweep into ``out_dir``; return a summary.

    ``workers`` 0 means one per allowed core, each pinned to its own. Workers are restarted after about
    ``restart_every`` images so Blender's memory stays flat on long runs.
    """
    t_start, started_at = time.perf_counter(), time.time()
    job.validate()
    out_dir = Path(out_dir)
    with removed_if_failed_empty(out_dir):
        return _render_sweep(job, out_dir, workers, shard, progress, restart_every, t_start, started_at)


@contextlib.contextmanager
def _part_lock(out_dir: Path, shard: tuple[int, int]):
    """This ``--shard`` part's lock on ``out_dir``: a second run of the same part is refused in one line.

    Other parts render other shards and may run beside it; where parts overlap (``0/1`` and
    ``0/2``), both write the same bytes atomically, so either copy of a shard is whole.
    """
    part = "" if shard == (0, 1) else f" (part {shard[0]}/{shard[1]})"
    with exclusive(
        out_dir / f".render-{shard[0]}of{shard[1]}.lock",
        lambda who: ShardError(f"{out_dir}: {who} is already rendering this sweep{part} here; wait for it to end"),
    ):
        yield


def _render_sweep(job, out_dir, workers, shard, progress, restart_every, t_start, started_at) -> dict:
    model = load_face_model(job.model)  # fail early, in the main process, on a bad model
    config = job_config(job, model_fingerprint(model))
    check_writable(out_dir, ShardError)
    with _part_lock(out_dir, shard):
        try:
            return _render_locked(job, out_dir, workers, shard, progress, restart_every, t_start, config)
        finally:  # also when this run fails: the temporaries of an earlier, killed run. Only under the
            # lock: a run refused by it must not take a held run's temporary files for stale ones.
            remove_stale_temporaries(out_dir, before=started_at)


def _render_locked(job, out_dir, workers, shard, progress, restart_every, t_start, config) -> dict:
    done, corrupt = scan(out_dir, job, config)
    versions = software_versions()

    mine = [k for k in range(job.n_shards) if k % shard[1] == shard[0]]
    todo = [k for k in mine if shards.shard_name(k) not in done]
    n_todo_batches = sum(len(job.shard_batches(k)) for k in todo)
    workers = max(1, min(workers or len(allowed_cores()), len(todo) or 1))
    bar = tqdm(total=n_todo_batches, desc=f"render {job.sweep}", unit="batch", disable=not progress, file=sys.stderr)

    spans: list[tuple[float, float]] = []  # (start, end) of each shard's rendering, any worker
    if todo:
        with Renderer(job, workers=workers, restart_every=restart_every) as renderer:
            for k, arrays, span in renderer.render_shards(todo):
                spans.append(span)
                name = shards.shard_name(k)
                digest = shards.write_shard(out_dir / name, arrays)
                done[name] = record_shard(out_dir, job, k, digest, config)
                write_manifest(out_dir, job, config, done, versions)
                bar.update(len(job.shard_batches(k)))
                stopping.check()  # a SIGTERM or Ctrl-C during the shard stops here, the shard kept
    bar.close()
    with folder_lock(out_dir / ".manifest.lock", wait=True):  # parts finishing together: the last sees all
        adopt_finished(out_dir, job, config, done)
        write_manifest(out_dir, job, config, done, versions)
    summary = {
        "out": str(out_dir),
        "sweep": job.sweep,
        "rendered_shards": len(todo),
        "skipped_shards": len(mine) - len(todo),
        "repaired_shards": len([k for k in corrupt if k in todo]),
        "complete": len(done) == job.n_shards,
    }
    if spans:
        # From the first shard started to the last one finished: the rate without start-up.
        render_s = max(end for _, end in spans) - min(start for start, _ in spans)
        summary["seconds"] = round(time.perf_counter() - t_start, 3)
        summary["render_seconds"] = round(render_s, 3)
        summary["images_per_s"] = round(n_todo_batches * job.sweep_cfg.batch_size / render_s, 2)
    return summary
