"""The bad-input and fault classes of issue 17, through the real command line.

Each class is a promise of the README's reliability section: one ``error:`` line and a
non-zero exit (no traceback) for a mistake; read commands never write; a failing command
leaves no file that was not there; no secret printed; Ctrl-C exits 130 with one line; a
resumed search continues instead of repeating; a lost worker whose studies finished is a
warning. The cases are new ones, written for the classes, not copies of the corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, ValidationSettings, search
from tests.forked import Command, run_command, run_commands, run_fresh
from tests.tuner.helpers import DEMO, REPO, TINY, cli_env, pg_schema, require_postgres

pytestmark = pytest.mark.slow

SECRET = "SECRETPW"
STUDY = "skiptune-demo_unet-heun-nfe3"
SEARCH = ("--model", str(DEMO), "--nfe", "3", "--rungs", "16,32", "--trials", "1",
          "--device", "cpu", "-q")


def _run(*argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240,
         fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """``skiptune ARGV`` in a process of its own; ``fresh``: a new interpreter, for what is
    read from the environment as the interpreter starts or imports the library."""
    command = Command(argv, cwd, env or {})
    return run_fresh(command, timeout) if fresh else run_command(command, timeout)


def _runs(commands: Sequence[tuple[str, ...]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    return run_commands([Command(argv, cwd) for argv in commands])


def _one_error(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode not in (0, None), output
    assert "Traceback" not in output, output
    # Notes (e.g. that a total of known points searches nothing) may come before the error.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding one finished tiny search at 3 NFE, closed (no -wal beside it)."""
    path = tmp_path_factory.mktemp("finished") / "skiptune.db"
    # In a process of its own: when it exits, its connections close and fold the WAL in.
    result = _run("search", *SEARCH, "--db", str(path), cwd=path.parent)
    assert result.returncode == 0, result.stderr
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture(scope="module")
def not_ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zero-byte file, another application's SQLite file, and a plain Optuna database."""
    folder = tmp_path_factory.mktemp("not_ours")
    (folder / "zero.db").write_bytes(b"")
    with sqlite3.connect(folder / "app.db") as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.close()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="theirs", storage=f"sqlite:///{folder}/optuna.db")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    del study
    return folder


# -- databases: read commands never write; failing commands leave nothing --------------------


READS = (("best",), ("studies",), ("front",), ("export", "--nfe", "3", "-o", "out.json"),
         ("plot", "-o", "out.png"))


def test_read_commands_refuse_what_is_not_a_skiptune_database_and_change_nothing(
    not_ours: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(not_ours, work)
    before = _files(work)
    commands = [(*argv, "--db", str(work / name))
                for name in ("zero.db", "app.db", "optuna.db") for argv in READS]
    for argv, result in zip(commands, _runs(commands, work), strict=True):
        line = _one_error(result, "pass the database skiptune-search wrote")
        name = Path(argv[argv.index("--db") + 1]).name
        expected = {"zero.db": "is an empty file", "app.db": "another application's tables "
                    "(invoices)", "optuna.db": "an Optuna database without skiptune's tables"}
        assert expected[name] in line, (argv, line)
    assert _files(work) == before          # byte for byte, and no -wal, -shm, lock or output


def test_read_commands_on_a_finished_search_leave_it_byte_for_byte(
    finished: Path, tmp_path: Path
) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(finished, db)
    before = _files(tmp_path)
    results = _runs([(*argv, "--db", str(db)) for argv in READS[:3]], tmp_path)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert _files(tmp_path) == before


def test_a_search_failing_on_its_inputs_creates_and_migrates_nothing(
    not_ours: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(not_ours, work)
    (work / "no_images").mkdir()
    before = _files(work)
    bad_ref = ("--ref", str(work / "no_images"))
    commands = [
        ("search", *SEARCH, *bad_ref, "--db", str(work / "new.db")),
        ("search", *SEARCH, *bad_ref, "--db", str(work / "optuna.db")),
        ("search", *SEARCH, "--db", str(work / "app.db")),
        ("search", *SEARCH, "--db", str(work / ("d" * 300 + ".db"))),
    ]
    results = _runs(commands, work)
    _one_error(results[0], "holds no .png/.jpg/.jpeg images")
    _one_error(results[1], "holds no .png/.jpg/.jpeg images")
    _one_error(results[2], "not a skiptune or Optuna database", "invoices")
    _one_error(results[3], "File name too long")
    assert _files(work) == before          # no new.db, optuna.db without skiptune's tables


def test_a_password_in_the_query_is_never_printed(tmp_path: Path) -> None:
    unreachable = ("postgresql+psycopg://postgres@127.0.0.1:1/test?password=" + SECRET
                   + "&sslpassword=" + SECRET + "2")
    env = {"SKIPTUNE_DB_RETRY_SECONDS": "0"}
    for argv in (("search", *SEARCH), ("studies",), ("best",)):
        result = _run(*argv, "--db", unreachable, cwd=tmp_path, env=env)
        line = _one_error(result, "password=***", "sslpassword=***")
        assert SECRET not in result.stdout + result.stderr, line


# -- inputs read whole, or refused in one line ------------------------------------------------


def test_malformed_inputs_and_environment_are_one_line(finished: Path, tmp_path: Path) -> None:
    (tmp_path / "noise.pt").write_bytes(os.urandom(20_000))
    (tmp_path / "rho.json").write_bytes(os.urandom(512) + b"\xff")
    grid = ("-o", str(tmp_path / "g.png"), "-n", "1", "--nfe", "3", "--device", "cpu")
    commands = [
        ("search", *SEARCH, "--model", str(tmp_path / "noise.pt"), "--db", "x.db"),
        ("sample", "--model", str(DEMO), "--from", str(tmp_path / "rho.json"), *grid),
        ("sample", "--model", str(DEMO), "--from", str(tmp_path / "rho.json"),
         "--rho-bottom", "0.5", *grid),
        ("search", *SEARCH, "--heartbeat", "10", "--grace", "15", "--db", "x.db"),
        ("search", *SEARCH[:4], "--rungs", "16,10000000000", "--db", "x.db"),
    ]
    results = _runs(commands, tmp_path)
    _one_error(results[0], "neither a zip archive (as torch.save writes) nor a pickle")
    _one_error(results[1], "is not text", "pass a file written by skiptune export")
    _one_error(results[2], "not both")
    _one_error(results[3], "--grace 15 is under two heartbeats")
    _one_error(results[4], "above 50,000", "--allow-large-rungs")
    failpoints = _run("best", "--db", str(finished), cwd=tmp_path,
                      env={"SKIPTUNE_FAILPOINTS": "front-write:two"}, fresh=True)
    _one_error(failpoints, "SKIPTUNE_FAILPOINTS", "needs a hit count")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.pt", "rho.json"]


# -- outputs -------------------------------------------------------------------------------


def test_outputs_refuse_links_folders_devices_and_unknown_extensions(
    finished: Path, tmp_path: Path
) -> None:
    target = tmp_path / "mine.json"
    target.write_text("keep me")
    (tmp_path / "link.json").symlink_to(target)
    (tmp_path / "plots").mkdir()
    db = ("--db", str(finished))
    commands = [
        ("export", "--nfe", "3", "-o", str(tmp_path / "link.json"), *db),
        ("export", "--nfe", "3", "-o", "/dev/null", *db),
        ("plot", "-o", str(tmp_path / "plots"), *db),
        ("plot", "-o", str(tmp_path / "front.jpg"), *db),
    ]
    results = _runs(commands, tmp_path)
    _one_error(results[0], "symbolic link")
    _one_error(results[1], "not a regular file")
    _one_error(results[2], "is a folder; pass a file name inside it")
    _one_error(results[3], "unsupported extension '.jpg'", ".png, .svg, .pdf")
    assert (tmp_path / "link.json").is_symlink() and target.read_text() == "keep me"
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "mine.json", "plots"]
    assert list((tmp_path / "plots").iterdir()) == []


def test_sample_untuned_by_default_and_exports_stay_with_their_budget(
    finished: Path, tmp_path: Path
) -> None:
    from PIL import Image

    exported = _run("export", "--nfe", "3", "-o", str(tmp_path / "rho.json"), "--db",
                    str(finished), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert json.loads((tmp_path / "rho.json").read_text())["nfe"] == 3
    common = ("--model", str(DEMO), "-n", "64", "--device", "cpu")
    results = _runs([
        ("sample", *common, "--nfe", "3", "-o", str(tmp_path / "untuned.png")),
        ("sample", *common, "--from", str(tmp_path / "rho.json"), "--nfe", "5",
         "-o", str(tmp_path / "other.png")),
    ], tmp_path)
    assert results[0].returncode == 0, results[0].stderr
    assert "ρ 1.000 → 1.000 linear (the untuned model" in results[0].stdout
    with Image.open(tmp_path / "untuned.png") as image:
        assert image.width >= 480                              # 8 digits of 28 px, enlarged
    _one_error(results[1], "searched for 3 NFE with heun", "NFE 5", "--allow-other-budget")
    assert not (tmp_path / "other.png").exists()


# -- the model misbehaving -----------------------------------------------------------------

_ADAPTERS = '''
import dataclasses

import torch
from tests.models.additive_unet import adapter as _tiny

def _nan(net, x, sigma):
    return net(x, sigma.log()) * float("nan")      # runs the net: every skip site is reached

def _raise(net, x, sigma):
    raise ZeroDivisionError("the adapter divided by zero")

def nan_everywhere():
    return dataclasses.replace(_tiny(), denoise=_nan)

def raises():
    return dataclasses.replace(_tiny(), denoise=_raise)
'''


def test_an_adapter_that_raises_or_returns_nan_fails_the_command(tmp_path: Path) -> None:
    (tmp_path / "bad_adapters.py").write_text(_ADAPTERS)
    common = ("--nfe", "3", "--rungs", "4,8", "--trials", "2", "--device", "cpu", "-q",
              "--features", str(_feature_net(tmp_path)), "--ref", str(_reference(tmp_path)),
              "--db", str(tmp_path / "s.db"))
    raising, nan = _runs([
        ("search", "--model", "bad_adapters:raises", *common),
        ("search", "--model", "bad_adapters:nan_everywhere", *common, "--study", "nan"),
    ], tmp_path)
    _one_error(raising, "adapter bad_adapters:raises's denoise raised ZeroDivisionError",
               "the adapter divided by zero")
    _one_error(nan, "sampled NaN or inf", "the model itself returns non-finite values")


def _feature_net(folder: Path) -> Path:
    """A TorchScript feature network for 8×8 one-channel images (the demo's is for 28×28)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    path = folder / "features.pt"
    torch.jit.script(net).save(str(path))
    spec = {"input_range": "-1,1", "resolution": 8, "channels": 1}
    (folder / "features.json").write_text(json.dumps(spec))
    return path


def _reference(folder: Path) -> Path:
    """A reference folder of 8×8 grayscale images."""
    import numpy as np
    from PIL import Image

    images = folder / "ref"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(
            images / f"{i}.png")
    return images


# -- Ctrl-C --------------------------------------------------------------------------------


def _ctrl_c_child() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delays", [(0.6,), (1.2,), (1.5, 1.51, 1.52, 1.54),
                                    (2.5, 2.51, 2.52, 2.6, 2.7)],
                         ids=["while-importing", "while-loading", "burst-early", "burst-later"])
def test_ctrl_c_at_any_moment_exits_130_with_one_line(
    delays: tuple[float, ...], tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "skiptune.cli", "search", *SEARCH, "--trials", "3",
         "--db", str(tmp_path / "s.db")],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_ctrl_c_child,
    )
    started = time.monotonic()
    for delay in delays:
        time.sleep(max(0.0, delay - (time.monotonic() - started)))
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (process.returncode, err)      # not killed by SIGINT
    assert "Traceback" not in out + err
    (line,) = err.splitlines()
    assert line.startswith("error: interrupted") and "rerun the same command" in line


# -- tables at 80 columns ------------------------------------------------------------------


def test_result_tables_fit_80_piped_columns_with_the_schedule_on_one_line(
    finished: Path, tmp_path: Path
) -> None:
    for command in ("best", "front", "studies"):
        result = _run(command, "--db", str(finished), cwd=tmp_path, env={"COLUMNS": "80"})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, result.stdout
        if command != "studies":
            # The ρ cell whole on the row that holds the study's numbers.
            (row,) = [line for line in lines if "→" in line]
            assert re.search(r"\d\.\d\d→\d\.\d\d", row) and re.search(r"\d+\.\d", row), row


# -- resume ------------------------------------------------------------------------------


def _params(db: Path) -> list[dict[str, object]]:
    storage = open_storage(db)
    study = optuna.load_study(study_name=STUDY, storage=storage.optuna_storage())
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)),
                    key=lambda t: t.number)
    storage.dispose()
    return [t.params for t in trials]


def test_a_resumed_search_continues_deterministically_instead_of_repeating(
    tmp_path: Path,
) -> None:
    options = {"nfe": 3, "objective": TINY, "heartbeat_interval": 1, "grace_period": 3,
               "validation": ValidationSettings(enabled=False)}   # trials are the subject
    resumed, straight = tmp_path / "resumed.db", tmp_path / "straight.db"
    search(DEMO, SearchConfig(trials=5, **options), db=resumed, device="cpu")
    search(DEMO, SearchConfig(trials=6, **options), db=resumed, device="cpu")
    search(DEMO, SearchConfig(trials=6, **options), db=straight, device="cpu")
    params = _params(resumed)
    assert len(params) == 6
    assert params[5] != params[4]              # the resume proposed something new...
    assert params == _params(straight)         # ...what an uninterrupted search proposes


# -- workers -----------------------------------------------------------------------------


def _children_of(pid: int, marker: bytes) -> list[int]:
    """The child processes of ``pid`` whose command line holds ``marker``: b"spawn_main" for
    multiprocessing's workers, b"resource_tracker" for its resource tracker."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if marker in command:
            found.append(child)
    return found


def _workers_of(pid: int) -> list[int]:
    """The multiprocessing worker processes of ``pid`` (not its resource tracker)."""
    return _children_of(pid, b"spawn_main")


def _two_workers_running(url: str, cwd: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A search of 8 trials by two workers on ``url``, once both run and a trial is RUNNING;
    with the workers' process ids."""
    process = subprocess.Popen(
        [sys.executable, "-m", "skiptune.cli", "search", "--model", str(DEMO), "--nfe",
         "3", "--rungs", "16,32", "--trials", "8", "--device", "cpu", "--workers", "2",
         "--heartbeat", "1", "--grace", "3", "--db", url, "--json"],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(workers := _workers_of(process.pid)) < 2 or not _running(url):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.2)
    return process, workers


def test_a_lost_worker_is_a_warning_when_the_others_finish_the_total() -> None:
    require_postgres()
    with pg_schema() as url:
        process, workers = _two_workers_running(url, REPO)
        os.kill(workers[0], signal.SIGKILL)
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "Traceback" not in err
        (warning,) = [line for line in err.splitlines() if line.startswith("warning: worker")]
        assert "died (exit code -9)" in warning and "results stand" in warning
        (summary,) = json.loads(out)
        assert summary["finished"] == summary["trials_total"] == 8


def _running(url: str) -> bool:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return bool(connection.execute(sqlalchemy.text(
                "SELECT count(*) FROM trials WHERE state = 'RUNNING'")).scalar())
    except sqlalchemy.exc.SQLAlchemyError:
        return False                                    # tables not created yet
    finally:
        engine.dispose()
