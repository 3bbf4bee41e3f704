"""Shared by the tuner, storage and CLI tests: the demo model, tiny rungs, PostgreSQL schemas."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial

from skiptune.objectives import ObjectiveSettings

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "skiptune" / "assets" / "demo_unet.pt"
TINY = ObjectiveSettings(rungs=(16, 32))   # about one second per trial at 3 NFE on one core
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FAST_HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3}

_demo_db: dict[str, Path] = {}


def demo_database(root: Path) -> Path:
    """A database holding a finished search of the demo model at 3 and 5 NFE (run once)."""
    if "path" not in _demo_db:
        from skiptune.tuner import SearchConfig, ValidationSettings, search

        torch.set_num_threads(1)
        path = root / "demo.db"
        # Validated at the last rung's N (the least it may be): the readers these tests cover
        # need a validated study, not a precise one, and 4 × 32 images cost a quarter of 4 × 128.
        search(DEMO, SearchConfig(nfe=[3, 5], trials=5, objective=TINY,
                                  validation=ValidationSettings(num_samples=32), **FAST_HEARTBEAT),
               db=path, device="cpu")
        _demo_db["path"] = path
    return _demo_db["path"]


def perturbed_checkpoint(path: Path) -> Path:
    """A copy of the demo checkpoint with one weight nudged: other weights, other fingerprint."""
    from skiptune.models._base import fingerprint_state_dict

    payload = torch.load(DEMO, map_location="cpu", weights_only=True)
    name = next(iter(payload["ema"]))
    payload["ema"][name] = payload["ema"][name] + 1e-3
    # Saved as save_checkpoint would: with the checksum of these (other) weights.
    payload["ema_sha256"] = fingerprint_state_dict(payload["ema"])
    torch.save(payload, path)
    return path


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                             connect_timeout=3):
            return True
    except Exception:
        return False


def require_postgres() -> None:
    """Skip a PostgreSQL test where no server runs; fail it in CI (SKIPTUNE_REQUIRE_POSTGRES=1)."""
    import pytest

    if pg_available():
        return
    message = "PostgreSQL is not reachable at 127.0.0.1:5432"
    if os.environ.get("SKIPTUNE_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " and SKIPTUNE_REQUIRE_POSTGRES=1")
    pytest.skip(message)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, as a URL whose search_path points at it."""
    import psycopg

    schema = f"skiptune_test_{uuid.uuid4().hex[:12]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def cli_env() -> dict[str, str]:
    """Environment for a skiptune subprocess run from this source tree, on one CPU thread."""
    env = dict(os.environ)
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def default_ctrl_c() -> None:
    """``preexec_fn`` for a Ctrl-C test's child: a suite started in the background
    (``nohup pytest &``) hands its children SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the search would never see the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def search_command(*args: str) -> list[str]:
    """argv that runs ``skiptune-search ARGS`` with this interpreter and source tree."""
    return [sys.executable, "-c", "from skiptune.cli import search_main; search_main()", *args]


def start_search(*args: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(search_command(*args), env=cli_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def assert_runs_what_it_was_given(retry: FrozenTrial, killed: FrozenTrial) -> None:
    """The retry runs the schedule the killed trial was given, whenever the kill landed.

    Killed between two ``suggest`` calls, a trial has recorded only some parameters (say
    rho_bottom of a queued 0.91 → 0.96 schedule): the retry must keep every one of those, and
    run a queued schedule (``fixed_params``) whole, not compare equal to the partial record.
    """
    given = killed.system_attrs.get("fixed_params") or killed.params
    assert {name: retry.params.get(name) for name in given} == given
    assert {name: retry.params.get(name) for name in killed.params} == killed.params


class CountingValidations:
    """The real objective; its validation copies count every measurement in ``measured`` and
    raise KeyboardInterrupt at the ``interrupt_at``-th (a kill in the middle of a race)."""

    def __init__(self, objective: Any, *, interrupt_at: int | None = None) -> None:
        self.objective, self.interrupt_at, self.measured = objective, interrupt_at, 0

    @property
    def identity(self) -> dict:
        return self.objective.identity

    def evaluate(self, schedule: Any, **kwargs: Any) -> Any:
        return self.objective.evaluate(schedule, **kwargs)

    def for_validation(self, **kwargs: Any) -> Any:
        outer, inner = self, self.objective.for_validation(**kwargs)

        class Validating:
            score = inner.score

            def evaluate(self, schedule: Any, **kw: Any) -> Any:
                outer.measured += 1
                if outer.measured == outer.interrupt_at:
                    raise KeyboardInterrupt
                return inner.evaluate(schedule, **kw)

        return Validating()
