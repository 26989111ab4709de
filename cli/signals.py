"""Ctrl-C and SIGTERM end a run within two seconds: exit 130 / 143, one line, no child left behind.

The signal becomes an exception in the main thread, so that `with` blocks close the ffmpeg pipes
and drop temporary files on the way out; every output is written atomically, so a rerun resumes
where this one stopped. A torch operation cannot be interrupted, though (one evaluation of a big
image takes many seconds): a watchdog then ends the ffmpeg children and the process itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

GRACE_SECONDS = 1.5


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs."""


def exit_code(error: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


def exit_line(error: KeyboardInterrupt) -> str:
    return (
        "terminated (SIGTERM): rerun the same command to resume"
        if isinstance(error, Terminated)
        else "interrupted: rerun the same command to resume"
    )


def install() -> None:
    """Turn SIGINT and SIGTERM into exceptions in the main thread; call once, from the main
    thread."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _on_signal(signum: int, frame) -> None:
    error = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    for each in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not break the cleanup
        signal.signal(each, signal.SIG_IGN)
    watchdog = threading.Timer(GRACE_SECONDS, _force_exit, (error,))
    watchdog.daemon = True
    watchdog.start()
    raise error


def _force_exit(error: KeyboardInterrupt) -> None:
    """The main thread is stuck in a long torch call: end the children and the process now."""
    from pipeline.video_io import kill_children

    kill_children()
    sys.stderr.write(f"\n{exit_line(error)}\n")
    sys.stderr.flush()
    os._exit(exit_code(error))
