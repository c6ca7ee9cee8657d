"""Atomic file writes and SHA-256 digests, for every output the stages write.

A write goes to a temporary file in the target's directory, is flushed to disk, then renamed
over the target: a reader (or a rerun after a kill) sees the old file or the new one, never a
partial one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TEMPORARY = ".*.tmp"  # an atomic write's temporary file: .<target name>.<random>.tmp
PROBE = ".write-test-*"  # check_writable's probe file


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, then rename."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file the caller asked for, not the hidden temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; shared dataset dirs need the usual mode
        os.replace(tmp, path)
    except OSError as e:  # a full disk or a size limit: name the target, not the temporary file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def removed_if_failed_empty(*directories: Path):
    """On an error in the block, remove each of ``directories`` (and its missing parents) that it
    created and left empty: a failed run leaves no empty output folder behind."""
    missing = [p for d in directories if d is not None for p in (Path(d), *Path(d).parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in sorted(set(missing), key=lambda q: len(q.parts), reverse=True):  # deepest first
            try:
                p.rmdir()  # only an empty folder goes
            except OSError:
                pass
        raise


class Busy(OSError):
    """Another process holds the lock: ``pid`` is the one it wrote, or None."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is held by process {pid if pid is not None else '(unknown)'}")
        self.path, self.pid = path, pid


@contextlib.contextmanager
def folder_lock(path: Path, wait: bool = False):
    """Hold an exclusive ``flock`` on ``path`` (created, holding our pid; removed on release).

    Without ``wait``, raise :class:`Busy` when another process holds it. The kernel drops the
    lock of a killed process, so a stale file is taken over. A holder unlinks the file before it
    lets go: a waiter that then gets the lock of the unlinked file tries again on the new one.
    """
    path = Path(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)  # unlink by it: the folder may be moved meanwhile
    try:
        with _flocked(path, folder, wait):
            yield
    finally:
        os.close(folder)


@contextlib.contextmanager
def exclusive(path: Path, refused):
    """:func:`folder_lock` on ``path`` for a command: where another process holds it, raise
    ``refused(who)`` (``who``: "process <pid>" or "another process") instead of :class:`Busy`; a Busy
    raised inside the block, once the lock is held, is not ours to explain and goes on as it is."""
    held = False
    try:
        with folder_lock(path):
            held = True
            yield
    except Busy as e:
        if held:
            raise
        raise refused(f"process {e.pid}" if e.pid is not None else "another process") from None


@contextlib.contextmanager
def _flocked(path: Path, folder: int, wait: bool):
    while True:
        # Read-only: a file open for writing would keep the folder's mount from turning read-only.
        fd = os.open(path.name, os.O_RDONLY | os.O_CREAT, 0o666, dir_fd=folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(fd, 32, 0).decode())
            os.close(fd)
            raise Busy(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path.name, dir_fd=folder).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError), open(path.name, "w", opener=lambda p, f: os.open(p, f, dir_fd=folder)) as w:
            w.write(str(os.getpid()))  # for the refusal message of a second process
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path.name, dir_fd=folder)
        os.close(fd)


def check_writable(directory: Path, error: type[Exception]) -> None:
    """Create ``directory`` if needed and prove it writable; else raise ``error`` with one line naming it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise error(f"{directory}: output directory is not writable ({e.strerror or e})") from None


def remove_stale_temporaries(directory: Path, before: float | None = None) -> list[Path]:
    """Delete the temporary files of writes killed before they renamed (SIGKILL skips the clean-up).

    Only files last modified before ``before`` (a wall-clock time; default now) go: a live
    writer's temporary file lasts one write, so one older than a run's start that is still there
    at its end was left by a killed writer, not by another process writing beside it.
    """
    before = time.time() if before is None else before
    stale = [
        p
        for pattern in (TEMPORARY, PROBE)
        for p in Path(directory).glob(pattern)
        if p.is_file() and p.stat().st_mtime < before
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def scratch_prefix(name: str) -> str:
    """The prefix of this process's scratch folders: ``<name>-<pid>-``, so a later run knows whose they were."""
    return f"{name}-{os.getpid()}-"


def remove_orphaned_scratch(parent: Path, name: str, legacy_age_s: float = 86400.0) -> list[Path]:
    """Delete ``<name>-<pid>-*`` folders in ``parent`` whose process is gone (a SIGKILL skips every clean-up).

    Folders named before the pid was part of the name (``<name>-<random>``) go once untouched for
    ``legacy_age_s``: a live renderer rewrites its frame every few seconds. Only this user's
    folders are touched.
    """
    pattern = re.compile(re.escape(name) + r"-(\d+)-.+")
    removed = []
    for p in Path(parent).glob(f"{name}-*"):
        try:
            info = p.lstat()
        except OSError:
            continue
        if not p.is_dir() or p.is_symlink() or info.st_uid != os.getuid():
            continue
        match = pattern.fullmatch(p.name)
        if match and _alive(int(match[1])):
            continue
        if not match and time.time() - info.st_mtime < legacy_age_s:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


BLENDER_SESSION = "blender_*"  # the folder Blender makes in the temp directory at start and deletes at exit
BLENDER_OWNER = "dcign-owner.pid"  # written into it: the pid of the process it belongs to


def claim_blender_session(tempdir: str | Path) -> None:
    """Mark Blender's session folder (``bpy.app.tempdir``) as this process's; remove those of dead processes.

    A SIGKILL skips Blender's clean-up, leaving a ``blender_*`` folder in the temp directory each
    time; the pid inside tells a later run whose it was. Call again after Blender remakes the folder
    (``read_factory_settings`` does).
    """
    if not str(tempdir):
        return
    tempdir = Path(tempdir)
    remove_orphaned_blender_sessions(tempdir.parent)
    with contextlib.suppress(OSError):  # no mark: the folder is only never cleaned by a later run
        (tempdir / BLENDER_OWNER).write_text(str(os.getpid()))


def remove_orphaned_blender_sessions(parent: Path) -> list[Path]:
    """Delete the ``blender_*`` folders in ``parent`` marked by :func:`claim_blender_session` whose process is gone.

    Unmarked folders (another program's Blender, or one started before this mark existed) and
    other users' folders are left alone.
    """
    removed = []
    for p in Path(parent).glob(BLENDER_SESSION):
        try:
            info = p.lstat()
            pid = int((p / BLENDER_OWNER).read_text())
        except (OSError, ValueError):
            continue
        if p.is_symlink() or not p.is_dir() or info.st_uid != os.getuid() or _alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
