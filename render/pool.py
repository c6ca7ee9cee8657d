"""Render worker processes: spawned, one per core and pinned to it, numpy with one BLAS thread.

While Cycles renders, Blender's main thread waits by spinning (``sched_yield``), and idle BLAS
threads spin too. Left to the scheduler, two workers' render threads can share a core while
both spinners hold the other; one pinned core per worker and one BLAS thread keep each render
thread beside its own spinner.

The workers' temp directory (``TMPDIR``, where Blender makes its session folder as it starts) is
a scratch folder of the pool's own, named after the parent's pid: a worker killed before it could
mark its Blender folder leaves nothing behind that the next run cannot tell is orphaned.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from render.atomic import remove_orphaned_scratch, scratch_prefix

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
POOL_SCRATCH = "dcign-workers"  # the pool's temp folder: <temp>/dcign-workers-<pid>-*, the workers' TMPDIR


def allowed_cores() -> list[int]:
    """The cores this process may run on (a batch scheduler's allocation, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@contextlib.contextmanager
def spawn_environment(values: dict[str, str]):
    """Processes spawned inside get ``values`` in their environment (read at numpy's and Blender's start)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def pool_scratch():
    """A temp folder for the workers, removed at the end; those of killed pools are removed first."""
    parent = Path(tempfile.gettempdir())
    remove_orphaned_scratch(parent, POOL_SCRATCH)
    scratch = tempfile.mkdtemp(prefix=scratch_prefix(POOL_SCRATCH), dir=parent)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def worker_pool(workers: int, initializer: Callable, initargs: tuple = (), maxtasksperchild: int | None = None):
    """A pool of ``workers`` spawned processes, each pinned to its own allowed core when there are enough.

    ``initializer(*initargs)`` runs in each worker once it holds its core. A worker retired after
    ``maxtasksperchild`` tasks frees its core for its replacement.
    """
    cores = allowed_cores()
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: bpy is not fork-safe
    pinnable = hasattr(os, "sched_setaffinity") and 1 < workers <= len(cores)
    owners = ctx.Array("q", len(cores)) if pinnable else None
    start_args = (owners, cores, initializer, initargs)
    with (
        pool_scratch() as scratch,
        spawn_environment({**dict.fromkeys(BLAS_THREAD_VARIABLES, "1"), "TMPDIR": scratch}),
        ctx.Pool(workers, _start_worker, start_args, maxtasksperchild=maxtasksperchild) as pool,
    ):
        yield pool
        pool.close()  # finished: the workers exit on their own and clean up (an error terminates them)
        pool.join()


def _start_worker(owners, cores: list[int], initializer: Callable, initargs: tuple) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when to stop (a worker that
    # died of it would lose its task and leave the parent waiting), and ends the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A spawned child inherits the parent's sys.path, which bpy extended with its own
    # script folders; one of them holds a bare ``bpy`` that shadows the real module.
    sys.path[:] = [p for p in sys.path if not re.search(r"[/\\]bpy[/\\]\d+\.\d+[/\\]", p)]
    if owners is not None:
        _claim_core(owners, cores)
    initializer(*initargs)


def _claim_core(owners, cores: list[int]) -> None:
    """Pin this worker to a core that no live sibling holds."""
    with owners.get_lock():
        for i, pid in enumerate(owners):
            if pid == 0 or not os.path.exists(f"/proc/{pid}"):  # free, or its worker was retired
                owners[i] = os.getpid()
                os.sched_setaffinity(0, {cores[i]})
                return
