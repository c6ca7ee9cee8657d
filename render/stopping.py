"""SIGTERM and Ctrl-C as a clean stop for the long-running commands.

Inside :func:`stop_on_signals` SIGTERM raises KeyboardInterrupt as Ctrl-C does, at once or, with
``defer``, at the next :func:`check` (Blender swallows an exception raised while it calls back
into Python, so code that renders checks between shards or images instead). The stop unwinds the
command through the same clean-ups as any error: every write is atomic (its temporary file is
removed), finished shards, checkpoints and results are kept, and a rerun of the same command
resumes. The command then prints one line and exits with 128 + the signal number. Further
signals while it stops are ignored, so the clean-up itself is not cut short.
"""

from __future__ import annotations

import contextlib
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_pending: int | None = None  # the signal received under ``defer``, not yet acted on


def _ignore_more() -> None:
    for s in SIGNALS:  # one stop: a second signal must not cut the clean-up short
        signal.signal(s, signal.SIG_IGN)


def _raise(signum, frame) -> None:
    _ignore_more()
    raise Stopped(signum)


def _defer(signum, frame) -> None:
    global _pending
    _ignore_more()
    _pending = signum


def check() -> None:
    """A safe point: stop here if a deferred signal came (a no-op outside :func:`stop_on_signals`)."""
    if _pending is not None:
        raise Stopped(_pending)


@contextlib.contextmanager
def shielded():
    """A block that SIGINT and SIGTERM do not cut in two (e.g. swapping several outputs into place):
    a signal that comes meanwhile stops the command right after it, as at a :func:`check`. Where no
    stop handler is installed (outside :func:`stop_on_signals`) it changes nothing."""
    global _pending
    current = {s: signal.getsignal(s) for s in SIGNALS}
    if not all(h in (_raise, _defer) for h in current.values()):
        yield
        return
    for s in SIGNALS:
        signal.signal(s, _defer)
    try:
        yield
    finally:
        for s, handler in current.items():
            if signal.getsignal(s) is _defer:  # not yet ignored by a signal that came
                signal.signal(s, handler)
    if _pending is not None and current[SIGNALS[0]] is _raise:
        raise Stopped(_pending)


@contextlib.contextmanager
def stop_on_signals(command: str, kept: str, defer: bool = False):
    """Turn SIGINT and SIGTERM in the block into one line on stderr and exit 128 + signum.

    ``kept``: what stays for a rerun to resume from (e.g. "the shards written so far").
    ``defer``: stop at the next :func:`check` rather than where the signal lands.
    """
    global _pending
    _pending = None
    previous = {s: signal.signal(s, _defer if defer else _raise) for s in SIGNALS}
    try:
        yield
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(
            f"{command}: stopped by {signal.Signals(signum).name}; {kept} are kept, rerun the same command to resume",
            file=sys.stderr,
        )
        sys.exit(128 + signum)
    finally:
        _pending = None
        for s, handler in previous.items():
            signal.signal(s, handler)
