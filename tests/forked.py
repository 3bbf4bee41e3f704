"""Commands run as real processes forked from one interpreter that imported skiptune once.

A test that checks what a user sees (one ``error:`` line, an exit code, the files left
behind) runs the command in a process of its own: its own stdin, stdout, stderr, folder,
environment and exit status, through the console-script entry point, so that a traceback
reaches its stderr as it would a user's. Most of a fresh interpreter's time is importing
torch (about three CPU seconds a command on two cores); here each command is forked from a
"zygote" that imported what a search runs on, so it costs the command alone.

The zygote is started once per test process, on first use. Its own start must print
nothing, so an import that warns is caught as it would be in a fresh interpreter. What a
fork cannot show (the imports a command makes, what is read from the environment at import
time, signals that land while importing) is tested with fresh interpreters elsewhere; set
SKIPTUNE_TESTS_FRESH=1 to run every command here in a fresh interpreter too.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.tuner.helpers import cli_env, search_command

FRESH = os.environ.get("SKIPTUNE_TESTS_FRESH") == "1"
Run = subprocess.CompletedProcess[str]

_ZYGOTE = r"""
import atexit, gc, importlib, json, os, select, sys, traceback

import skiptune.cli

skiptune.cli._import_the_library(reads_only=False)      # what a search imports, once
assert "torch" in sys.modules                              # the import a fork saves
assert "diffusers" not in sys.modules                      # a command may hide it (a shim)


def run(job):
    # The command's own stdin, stdout, stderr, folder, environment, path and argv, then its
    # entry point, ending as the interpreter would: a SystemExit's code, or a traceback and 1.
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.path[:0] = [*job["path"], os.getcwd()]           # as `python -m` puts its folder first
    importlib.invalidate_caches()
    sys.argv = job["argv"]
    try:
        (skiptune.cli.main if job["group"] else skiptune.cli.search_main)()
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def start(job):
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = run(job)
        # What an interpreter's exit does that matters here: exit handlers, finalizers (a
        # dropped SQLite connection folds its WAL back), flushed streams; without the slow
        # tear-down of every module.
        atexit._run_exitfuncs()
        gc.collect()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = job["id"]
    print(json.dumps({"id": job["id"], "pid": pid}), flush=True)


print("ready", flush=True)
running = {}
unread = b""              # read from the descriptor itself: a buffered readline could hold a
reading = True            # second job where select() no longer sees it
while reading or running:
    if select.select([0] if reading else [], [], [], 0.02)[0]:
        chunk = os.read(0, 1 << 16)
        reading = bool(chunk)
        unread += chunk
        while b"\n" in unread:
            line, unread = unread.split(b"\n", 1)
            start(json.loads(line))
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        print(json.dumps({"id": running.pop(pid), "code": os.waitstatus_to_exitcode(status)}),
              flush=True)
"""


@dataclass(frozen=True)
class Command:
    """One ``skiptune`` command: its arguments after the program's name, where it runs, and
    what is added to or changed in the test's environment for it (``cli_env()``'s)."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    search_only: bool = False          # `skiptune-search ARGV`, not `skiptune ARGV`
    path: tuple[Path, ...] = ()        # folders put first on the import path (a shim)


class _Zygote:
    """The forking interpreter of this test process, and the commands it runs."""

    def __init__(self) -> None:
        self.output = Path(tempfile.mkdtemp(prefix="skiptune-forked-"))
        self.stderr = self.output / "zygote.stderr"
        with self.stderr.open("w") as stderr:
            self.process = subprocess.Popen([sys.executable, "-c", _ZYGOTE], env=cli_env(),
                                            cwd=self.output, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert self.process.stdout is not None and self.process.stdin is not None
        assert self.process.stdout.readline() == "ready\n", self.stderr.read_text()
        assert self.stderr.read_text() == "", "importing skiptune printed something"
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.started: dict[str, Future[int]] = {}
        self.ended: dict[str, Future[int]] = {}
        threading.Thread(target=self._collect, daemon=True).start()

    def start(self, command: Command) -> tuple[str, int, Future[int]]:
        """Fork ``command``; its id, its process id, and the exit code it ends with."""
        name = str(next(self.ids))
        started, ended = Future[int](), Future[int]()
        program = ["skiptune-search"] if command.search_only else ["skiptune"]
        job = {"id": name, "argv": [*program, *command.argv], "group": not command.search_only,
               "cwd": str(command.cwd), "env": {**cli_env(), **command.env},
               "stdout": str(self.output / f"{name}.out"),
               "stderr": str(self.output / f"{name}.err"), "path": list(map(str, command.path))}
        with self.lock:
            self.started[name], self.ended[name] = started, ended
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        return name, started.result(timeout=60), ended

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            report = json.loads(line)
            with self.lock:
                if "pid" in report:
                    self.started.pop(report["id"]).set_result(report["pid"])
                else:
                    self.ended.pop(report["id"]).set_result(report["code"])
        with self.lock:
            for future in [*self.started.values(), *self.ended.values()]:
                future.set_exception(RuntimeError(f"the zygote died: {self.stderr.read_text()}"))

    def run(self, command: Command, timeout: float) -> Run:
        name, pid, ended = self.start(command)
        try:
            code = ended.result(timeout=timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(list(command.argv), timeout) from None
        out, err = (self.output / f"{name}.{kind}" for kind in ("out", "err"))
        result = Run(list(command.argv), code, out.read_text(), err.read_text())
        out.unlink()
        err.unlink()
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.output, ignore_errors=True)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _the_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None:
            _zygote = _Zygote()
            atexit.register(close)
        return _zygote


def close() -> None:
    """End this test process's zygote, if it started: its commands' CPU time then counts as
    this process's children's (benchmarks/suite_cost.py reads it at the session's end)."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


def run_fresh(command: Command, timeout: float = 240) -> Run:
    """Run ``command`` in a fresh interpreter: for what a fork cannot show."""
    env = {**cli_env(), **command.env}
    if command.path:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, command.path), env["PYTHONPATH"]])
    argv = (search_command(*command.argv) if command.search_only
            else [sys.executable, "-m", "skiptune.cli", *command.argv])
    result = subprocess.run(argv, cwd=command.cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    return Run(list(command.argv), result.returncode, result.stdout, result.stderr)


def run_command(command: Command, timeout: float = 240) -> Run:
    """Run ``command`` to its end: its exit code, stdout and stderr."""
    if FRESH:
        return run_fresh(command, timeout)
    return _the_zygote().run(command, timeout)


def run_commands(commands: Sequence[Command], timeout: float = 240) -> list[Run]:
    """Several commands, two at a time (one per core), in their order."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda command: run_command(command, timeout), commands))
