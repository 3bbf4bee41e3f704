"""Ctrl-C at the command line: the first one interrupts, the ones right after it are ignored.

Python's own handler raises KeyboardInterrupt at every Ctrl-C, so a second one landing while
the first is handled (a trial being failed and re-queued, the error line being printed)
escapes as a traceback, and the process then dies by the signal. This handler raises at the
first and ignores the rest; the cleanup it starts is short (database writes, bounded by the
connection retry time). The command line installs it when ``skiptune.cli`` is imported, before
the seconds that importing torch takes, and turns the KeyboardInterrupt into one line and
exit code 130.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["arm", "install", "interrupted"]

_count = 0
_armed = False


def _handler(_signum: int, _frame: FrameType | None) -> None:
    global _count
    _count += 1
    # Ignored from now on, at the OS level: Python's shutdown puts a handler back to SIG_DFL
    # (a later Ctrl-C would then kill the exiting process by the signal) unless it is SIG_IGN.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Before the command line's edge runs (while its own modules import) nothing could catch
    # the exception: the Ctrl-C is only counted, and :func:`arm` acts on it.
    if _count == 1 and _armed:
        raise KeyboardInterrupt


def install() -> None:
    """Use this handler for SIGINT, in the main thread, unless SIGINT is ignored (a job
    started with nohup or in the background keeps ignoring it)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)


def arm() -> None:
    """From now on the first Ctrl-C raises KeyboardInterrupt; one counted before raises now."""
    global _armed
    _armed = True
    if _count:
        raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether a Ctrl-C reached this process through the handler."""
    return _count > 0


install()
