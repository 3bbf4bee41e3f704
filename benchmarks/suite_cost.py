"""What the test suite costs, and where: CPU seconds per test, its own and its subprocesses'.

    python benchmarks/suite_cost.py [--out FILE.jsonl] [--top 25] [-- PYTEST ARGS...]

(from the repository root, with the development install of ``make setup``)

Runs pytest with the usual options and this module as a plugin, which records for every
test its wall time and the CPU time its process spent (``RUSAGE_SELF``) and its finished
subprocesses spent (``RUSAGE_CHILDREN``: every ``skiptune`` command a test starts and waits
for; the commands ``tests/forked.py`` forks count once its interpreter ends, as one record of
their own at the end of each test process). Then prints the
totals, the modules and the tests that cost most, and the cost of starting a ``skiptune``
command (one that samples: torch and the library; one that reads: the readers alone), so that
the share of the suite spent in interpreter start-up can be read off.

On 2 cores the suite's wall time cannot fall below half its CPU time: that bound, not the
scheduling, is what a faster suite has to move. Module-scoped fixtures are counted in the
first test of their module. ``--out FILE`` keeps one JSON line per test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORDS_ENV = "SKIPTUNE_SUITE_COST_DIR"      # where each test process appends its records
FORKED = "tests/forked.py: the commands it forked, counted as it ended"


def cpu_seconds(who: int) -> float:
    """User and system CPU seconds of ``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN``."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# RUSAGE_CHILDREN as the last test of this process ended: what comes after is tests/forked.py's.
_children_after_the_last_test = [0.0]


# This module is also the pytest plugin (``-p suite_cost``) loaded in every test process.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    started = time.perf_counter()
    own, children = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    yield
    record = {"test": item.nodeid, "wall": time.perf_counter() - started,
              "own": cpu_seconds(resource.RUSAGE_SELF) - own,
              "children": cpu_seconds(resource.RUSAGE_CHILDREN) - children}
    _children_after_the_last_test[0] = cpu_seconds(resource.RUSAGE_CHILDREN)
    with open(Path(os.environ[RECORDS_ENV]) / f"{os.getpid()}.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The commands tests/forked.py forked count as its interpreter ends, after the last test
    (tests/conftest.py ends it with the session): one record for all of them, in each test
    process (not in the process that only hands tests out to them)."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    children = cpu_seconds(resource.RUSAGE_CHILDREN) - _children_after_the_last_test[0]
    record = {"test": FORKED, "wall": 0.0, "own": 0.0, "children": children}
    with open(Path(os.environ[RECORDS_ENV]) / f"{os.getpid()}.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


# Two commands that fail at once: what starting a command costs, by the imports it needs.
STARTUPS = {
    "skiptune-search refusing a missing model (torch and the library)":
        ("from skiptune.cli import search_main; search_main()", "--model", "no-such-model.pt",
         "--nfe", "3"),
    "skiptune best refusing a missing database (the readers, no torch)":
        ("from skiptune.cli import main; main()", "best", "--db", "no-such.db"),
}


def startup_seconds(arguments: tuple[str, ...], repeats: int = 3) -> float:
    """CPU seconds of ``python -c ARGUMENTS`` in an empty folder, the median of ``repeats``."""
    costs = []
    for _ in range(repeats):
        before = cpu_seconds(resource.RUSAGE_CHILDREN)
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, "-c", *arguments], cwd=folder, capture_output=True,
                           check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
        costs.append(cpu_seconds(resource.RUSAGE_CHILDREN) - before)
    return sorted(costs)[len(costs) // 2]


def summarise(rows: list[dict[str, Any]], wall: float, top: int) -> None:
    own = sum(r["own"] for r in rows)
    children = sum(r["children"] for r in rows)
    tests = sum(row["test"] != FORKED for row in rows)
    print(f"{tests} tests, wall {wall / 60:.1f} min; CPU {(own + children) / 60:.1f} min "
          f"(test processes {own / 60:.1f}, their subprocesses {children / 60:.1f}); "
          f"bound on 2 cores {(own + children) / 120:.1f} min")
    modules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row in rows:
        cost = modules[row["test"].split("::")[0]]
        cost[0] += row["own"]
        cost[1] += row["children"]
        cost[2] += row["wall"]
    print(f"\n{'CPU s':>7} {'own':>6} {'subproc':>7} {'wall':>6}  module")
    for name, (mine, theirs, seconds) in sorted(modules.items(),
                                                key=lambda m: -(m[1][0] + m[1][1]))[:top]:
        print(f"{mine + theirs:7.0f} {mine:6.0f} {theirs:7.0f} {seconds:6.0f}  {name}")
    print(f"\n{'CPU s':>7} {'own':>6} {'subproc':>7} {'wall':>6}  test")
    for row in sorted(rows, key=lambda r: -(r["own"] + r["children"]))[:top]:
        print(f"{row['own'] + row['children']:7.0f} {row['own']:6.0f} {row['children']:7.0f} "
              f"{row['wall']:6.0f}  {row['test'][:110]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as records:
        paths = [str(Path(__file__).parent), str(REPO),
                 *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, RECORDS_ENV: records, "PYTHONPATH": os.pathsep.join(paths)}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "suite_cost",
                                 "-p", "no:cacheprovider", *args.pytest_args],
                                cwd=REPO, env=env, check=False)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for path in sorted(Path(records).glob("*.jsonl"))
                for line in path.read_text().splitlines()]
    if args.out is not None:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print()
    summarise(rows, wall, args.top)
    print()
    for what, arguments in STARTUPS.items():
        print(f"one {what}: {startup_seconds(arguments):.1f} CPU s (median of 3)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
