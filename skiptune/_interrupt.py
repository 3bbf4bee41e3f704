"""Ctrl-C at the command line: one interrupts, the ones after it is handled are ignored.

Python's own handler raises KeyboardInterrupt at every Ctrl-C, so a second one landing while
the first is handled (a trial being failed and re-queued, the error line being printed)
escapes as a traceback, and the process then dies by the signal. This handler raises until
the interrupt is handled (the code that catches it calls :func:`acknowledge` first) and
ignores the rest; the cleanup it starts is short (database writes, bounded by the connection
retry time). Raising again until then matters: an exception raised while a weakref callback
or a ``__del__`` runs is printed and dropped by Python, so a first Ctrl-C can be lost. The
command line installs the handler when ``skiptune.cli`` is imported, before the seconds that
importing torch takes, and turns the KeyboardInterrupt into one line and exit code 130.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["acknowledge", "armed", "install", "interrupted", "quiet_connection_cleanup"]

_COMMANDS = ("skiptune", "skiptune-search", "cli.py")   # console scripts, python -m skiptune.cli
_count = 0
_armed = False
_handled = False     # a KeyboardInterrupt from this handler has been caught
_previous: Any = None


def _handler(_signum: int, _frame: FrameType | None) -> None:
    global _count
    _count += 1
    # Before the command line's edge runs (while its own modules import) nothing could catch
    # the exception: the Ctrl-C is only counted, and :func:`armed` acts on it.
    if _armed and not _handled:
        raise KeyboardInterrupt
    _ignore_from_now_on()


def _ignore_from_now_on() -> None:
    # At the OS level: Python's shutdown puts a handler back to SIG_DFL (a later Ctrl-C would
    # then kill the exiting process by the signal) unless it is SIG_IGN.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def acknowledge() -> None:
    """Say that a KeyboardInterrupt was caught: further Ctrl-C are ignored while it is handled.

    Call it first in every ``except KeyboardInterrupt`` whose cleanup must not be cut short.
    """
    global _handled
    if _count:
        _handled = True
        _ignore_from_now_on()


def install() -> None:
    """Use this handler for SIGINT, in the main thread, unless SIGINT is ignored (a job
    started with nohup or in the background keeps ignoring it) or it is installed already."""
    global _previous
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if current is signal.default_int_handler:
        _previous = current
        signal.signal(signal.SIGINT, _handler)
        sys.unraisablehook = _quiet_dropped_interrupts(sys.unraisablehook)


def _quiet_dropped_interrupts(
    previous: Callable[[Any], object],
) -> Callable[[Any], object]:
    """An unraisable-exception hook that keeps a dropped Ctrl-C off the terminal.

    Python prints and drops an exception raised inside a weakref callback or ``__del__``. A
    KeyboardInterrupt from :func:`_handler` dropped there is not printed: the next Ctrl-C
    raises again (:func:`_handler` raises until one is acknowledged). Every other
    unraisable goes to ``previous``.
    """

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _count):
            previous(unraisable)

    return hook


@contextlib.contextmanager
def armed() -> Iterator[None]:
    """While the block runs, the first Ctrl-C raises KeyboardInterrupt (one counted before it
    raises at once). Python's handler comes back after it, unless a Ctrl-C came: SIGINT then
    stays ignored until the process exits."""
    global _armed
    install()
    _armed = True
    try:
        if _count:
            raise KeyboardInterrupt
        yield
    finally:
        _armed = False
        if not _count and _previous is not None and threading.current_thread() is \
                threading.main_thread():
            signal.signal(signal.SIGINT, _previous)


def quiet_connection_cleanup() -> None:
    """Keep SQLAlchemy's "Exception during reset or similar" traceback off the terminal.

    A Ctrl-C (or a SIGTERM turned into one) that lands while a connection goes back to its
    pool interrupts the rollback that resets it, and SQLAlchemy logs that with a traceback,
    which the logging module's last-resort handler prints. The server rolls the transaction
    back when the connection closes, so nothing stored changes, and the command says in its
    own line what happened. For the command line and its worker processes only: a program
    that configures logging still receives the record through its own handlers.
    """
    logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())


def interrupted() -> bool:
    """Whether a Ctrl-C reached this process through the handler."""
    return _count > 0


# Only in a process started as the command (not when a program or a test imports the module):
# there the handler must be in place before the edge runs, during the slow imports.
if Path(sys.argv[0] if sys.argv else "").name in _COMMANDS:
    install()
