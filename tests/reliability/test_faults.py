"""Crash safety: SIGKILL real searches at named moments and at random, resume, lose nothing.

Every kill is a fresh ``skiptune-search`` process on the demo model (3 NFE, rungs 16/32,
about a second a trial on one thread) that SKIPTUNE_FAILPOINTS tells where to die (see
``skiptune/_failpoints.py``), or that the test kills after a random delay; the same command
then runs again. After each kill the database must pass its integrity checks and still hold
every trial that had finished, unchanged; at the end the study must be exactly complete.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from PIL import Image
from sqlalchemy.pool import NullPool

from skiptune._failpoints import FAILPOINTS, _parse
from skiptune.data import load_mnist
from skiptune.errors import ConfigurationError
from skiptune.objectives import DirectoryStatisticsCache, load_feature_extractor, load_reference
from skiptune.storage import open_storage
from tests.reliability.helpers import (
    KILLED,
    assert_nothing_lost,
    check_study,
    finished_count,
    kill_launched,
    launch,
    retries_of,
    stale_failed,
    statistics_rows,
    terminal_trials,
)
from tests.tuner.helpers import DEMO, assert_runs_what_it_was_given, pg_schema, require_postgres

pytestmark = pytest.mark.slow

REFERENCE_IMAGES = 300          # two batches of reference features, so a kill can fall between
TOTAL = 16

# Where each run dies, in order. "random" is a SIGKILL from the test 0–1.5 s (seeded) into
# the run's trials;
# "trial-told:last" dies right after the tell that reaches the total, before the front update.
KILLS = (
    "reference-batch:2",        # reference features half computed, nothing cached
    "stats-put",                # inside the transaction that caches the statistics
    "study-created",            # study created, its configuration not yet stored
    "study-seeding:2",          # two of the four queued schedules queued
    "trial-asked",              # a trial RUNNING with no heartbeat yet
    "sampling-step:8",          # inside the solver, in the run's second trial
    "features-batch:4",         # features of a batch computed, not yet scored
    "trial-result",             # measurements stored, state not yet told
    "front-write",              # inside the front transaction
    "trial-told:2",             # second trial told, front not yet updated
    "random",
    "random",
    "random",
    "trial-told:last",
)


def test_failpoint_names_are_checked() -> None:
    assert _parse(" front-write:2 ,trial-told,sampling-step:5:INT") == {
        "front-write": (2, signal.SIGKILL),
        "trial-told": (1, signal.SIGKILL),
        "sampling-step": (5, signal.SIGINT),
    }
    assert _parse("") == {}
    with pytest.raises(ConfigurationError, match="unknown fail point 'front_write'"):
        _parse("front_write")
    with pytest.raises(ConfigurationError, match="hit count ≥ 1"):
        _parse("front-write:0")
    with pytest.raises(ConfigurationError, match="unknown signal 'HUP'; known: KILL, INT, TERM"):
        _parse("front-write:1:HUP")
    assert {k.split(":")[0] for k in KILLS} - {"random"} <= set(FAILPOINTS)


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred MNIST test digits as 28×28 grayscale PNGs: statistics to compute and cache."""
    folder = tmp_path_factory.mktemp("reference")
    for index, digit in enumerate(load_mnist()[0][:REFERENCE_IMAGES]):
        Image.fromarray(digit).save(folder / f"{index:04d}.png")
    return folder


def _sqlite_checks(db: Path) -> None:
    with sqlite3.connect(db, timeout=30) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []


def _sql(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as connection:
        return connection.execute(query).fetchall()


def _newest_trial(db: Path) -> int:
    try:
        return _sql(db, "SELECT coalesce(max(number), -1) FROM trials")[0][0]
    except sqlite3.OperationalError:
        return -1                              # Optuna's tables are not there yet


def _run_until_killed(db: Path, args: tuple[str, ...], point: str, *, cache: Path,
                      delay: float) -> float:
    """Run the search until it dies at ``point``.

    "random": SIGKILL ``delay`` seconds after the run starts its first trial, wherever it
    then is (measured from the trial, not the launch, so that a faster machine does not
    finish the study first).
    """
    started = time.monotonic()
    process = launch(*args, failpoint=None if point == "random" else point, cache=cache)
    if point == "random":
        before = _newest_trial(db)
        while _newest_trial(db) == before and process.poll() is None:
            time.sleep(0.05)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
    _, err = process.communicate(timeout=240)
    assert process.returncode == KILLED, f"{point}: exit {process.returncode}, {err[-3000:]}"
    return time.monotonic() - started


def test_a_search_killed_fourteen_times_resumes_to_its_total_losing_nothing(
    tmp_path: Path, reference_folder: Path
) -> None:
    db = tmp_path / "s.db"
    args = ("--model", str(DEMO), "--nfe", "3", "--trials", str(TOTAL), "--rungs", "16,32",
            "--ref", str(reference_folder), "--features", "digits", "--db", str(db),
            "--device", "cpu", "--heartbeat", "1", "--grace", "2", "--quiet")
    engine = sqlalchemy.create_engine(f"sqlite:///{db}", poolclass=NullPool)
    rng = random.Random(6)
    snapshot: dict = {}
    lost = 0
    for point in KILLS:
        if point == "trial-told:last":
            assert finished_count(snapshot) < TOTAL, "raise TOTAL: the kills finished the study"
            point = f"trial-told:{TOTAL - finished_count(snapshot)}"
        seconds = _run_until_killed(db, args, point, cache=tmp_path / "cache",
                                    delay=rng.uniform(0.0, 1.5))
        _sqlite_checks(db)
        after = terminal_trials(engine)
        lost += assert_nothing_lost(snapshot, after)
        snapshot = after
        statistics = statistics_rows(engine)
        assert len(statistics) <= 1
        if point == "stats-put":
            assert statistics == []                      # rolled back, not torn
        if point == "study-created":
            assert _sql(db, "SELECT count(*) FROM studies") == [(1,)]
            assert _sql(db, "SELECT count(*) FROM study_user_attributes") == [(0,)]
        if point == "study-seeding:2":
            assert _sql(db, "SELECT count(*) FROM trials WHERE state = 'WAITING'") == [(2,)]
        if point == "trial-asked":                       # the zombie Optuna never sees stale
            running = _sql(db, "SELECT trial_id FROM trials WHERE state = 'RUNNING'")
            assert len(running) == 1
            assert _sql(db, f"SELECT count(*) FROM trial_heartbeats "
                            f"WHERE trial_id = {running[0][0]}") == [(0,)]
        print(f"killed at {point} after {seconds:.1f} s: {finished_count(after)} finished")

    final = launch(*args[:-1], "--json", cache=tmp_path / "cache")
    out, err = final.communicate(timeout=240)
    assert final.returncode == 0, err
    (summary,) = json.loads(out)
    assert summary["finished"] == summary["trials_total"] == TOTAL and summary["running"] == 0

    _sqlite_checks(db)
    lost += assert_nothing_lost(snapshot, terminal_trials(engine))
    trials = check_study(open_storage(db), TOTAL)
    assert stale_failed(trials)                           # the killed trials were failed...
    for failed in stale_failed(trials):                   # ...and each re-queued once, same ρ
        (retry,) = retries_of(failed, trials)
        assert retry.params == failed.params or not failed.params    # none yet: killed at ask

    (cached,) = statistics_rows(engine)                   # one whole entry, the right numbers
    reference = load_reference(reference_folder, load_feature_extractor("digits", device="cpu"),
                               cache=DirectoryStatisticsCache(tmp_path / "recomputed"),
                               progress=False)
    assert cached["meta"]["count"] == REFERENCE_IMAGES
    np.testing.assert_allclose(cached["mu"], reference.mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cached["sigma"], reference.sigma, rtol=1e-6, atol=1e-9)
    assert lost == 0


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    with pg_schema() as url:
        yield url
        kill_launched()                   # before the schema is dropped under its workers


def _connections(engine: sqlalchemy.Engine, pids: set[int]) -> dict[str, int]:
    """Open connections per skiptune process (application_name ``skiptune-<pid>``), counting
    only the processes in ``pids``: tests running beside this one use the same server."""
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'skiptune-%' GROUP BY application_name"
        )).all()
    names = {f"skiptune-{pid}" for pid in pids}
    return {name: count for name, count in rows if name in names}


def _process_tree(root: int) -> set[int]:
    """``root`` and every process descended from it (its search workers), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:                                   # the process ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    while grown := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    return tree


def test_a_worker_killed_mid_trial_while_three_others_run_on_postgresql(pg_url: str) -> None:
    total = 16
    args = ("--model", str(DEMO), "--nfe", "3", "--trials", str(total), "--rungs", "16,32",
            "--db", pg_url, "--device", "cpu", "--heartbeat", "1", "--grace", "8", "--json")
    engine = sqlalchemy.create_engine(pg_url, poolclass=NullPool)
    survivor = launch(*args, "--workers", "3")
    parent = f"skiptune-{survivor.pid}"
    peaks: dict[str, int] = {}
    victims: set[int] = set()

    def watch() -> None:
        for name, count in _connections(engine, _process_tree(survivor.pid) | victims).items():
            peaks[name] = max(peaks.get(name, 0), count)

    deadline = time.monotonic() + 180
    while len(set(peaks) - {parent}) < 3:                 # all three of its workers connect
        assert survivor.poll() is None and time.monotonic() < deadline, survivor.stderr.read()
        watch()
        time.sleep(0.2)

    victim = launch(*args, failpoint="features-batch:1")  # dies inside its first trial
    victims.add(victim.pid)
    while victim.poll() is None:                          # four workers run meanwhile
        watch()
        time.sleep(0.1)
    running_at_kill = {n for n, in _pg_running(engine)}
    snapshot = terminal_trials(engine)
    assert victim.returncode == KILLED, (victim.returncode, victim.communicate())
    assert f"skiptune-{victim.pid}" in peaks

    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    assert json.loads(out)[0]["finished"] == total
    assert_nothing_lost(snapshot, terminal_trials(engine))
    storage = open_storage(pg_url)
    trials = check_study(storage, total)
    stale = stale_failed(trials)
    assert [t.number for t in stale] == [t.number for t in stale if t.number in running_at_kill]
    (killed,) = stale                                     # the victim's trial, and only it...
    (retry,) = retries_of(killed, trials)
    assert retry.state.is_finished()                      # ...ran again, as it was given
    assert_runs_what_it_was_given(retry, killed)
    assert len(storage.runs()) == 2
    storage.dispose()
    # Each worker process holds at most 4 connections (docs/search.md, "Several workers").
    workers = {name: count for name, count in peaks.items() if name != parent}
    assert len(workers) >= 4 and max(workers.values()) <= 4, peaks
    print(f"\nconnections per process at peak, 4 workers running: {peaks}")


def _pg_running(engine: sqlalchemy.Engine) -> list[tuple[int]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sqlalchemy.text(
            "SELECT number FROM trials WHERE state = 'RUNNING'"
        ))]
