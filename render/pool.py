"""Render worker processes: spawned, one per core and pinned to it, numpy with one BLAS thread.

While Cycles renders, Blender's main thread waits by spinning (``sched_yield``), and idle BLAS
threads spin too. Left to the scheduler, two workers' render threads can share a core while
both spinners hold the other; one pinned core per worker and one BLAS thread keep each render
thread beside its own spinner.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import signal
import sys
from collections.abc import Callable

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def allowed_cores() -> list[int]:
    """The cores this process may run on (a batch scheduler's allocation, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@contextlib.contextmanager
def one_blas_thread():
    """Processes spawned inside run numpy with one BLAS thread (the environment is read at numpy's import)."""
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    with one_blas_thread(), ctx.Pool(workers, _start_worker, start_args, maxtasksperchild=maxtasksperchild) as pool:
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
