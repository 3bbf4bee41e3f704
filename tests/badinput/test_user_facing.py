"""The user-facing classes of issue 24, through the real command line.

One test per class, named after the class, with variants beyond the issue's examples: every
mistake is one ``error:`` line (never a traceback) and creates nothing; an adapter that exits
is an adapter error; SIGHUP ends a search as SIGTERM and Ctrl-C do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from tests.badinput.test_classes import (
    SEARCH,
    STUDY,
    _children_of,
    _feature_net,
    _files,
    _one_error,
    _reference,
    _run,
    _runs,
    _two_workers_running,
)
from tests.tuner.helpers import cli_env, pg_schema, require_postgres

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding one finished tiny search at 3 NFE."""
    path = tmp_path_factory.mktemp("finished") / "skiptune.db"
    result = _run("search", *SEARCH, "--db", str(path), "--validation-n", "32", cwd=path.parent)
    assert result.returncode == 0, result.stderr
    return path


# -- 3. one line, never a traceback ----------------------------------------------------------


def test_one_line_never_a_traceback(finished: Path, tmp_path: Path) -> None:
    # Output that cannot be written: a full device, as a table and as JSON, and from a search.
    for argv in (("best",), ("best", "--json"), ("studies",), ("front",)):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "skiptune.cli", *argv, "--db",
                                     str(finished)], cwd=tmp_path, env=cli_env(), stdout=full,
                                    stderr=subprocess.PIPE, text=True, timeout=240)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: cannot write the output to stdout"), line
    # An output encoding without ρ: the tables and the error lines fall back to "rho".
    ascii_env = {"PYTHONIOENCODING": "ascii"}
    for argv in (("best",), ("studies",), ("front",)):
        shown = _run(*argv, "--db", str(finished), cwd=tmp_path, env=ascii_env, fresh=True)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr and shown.stdout.isascii()
        _assert_columns_align(shown.stdout)
    best = _run("best", "--db", str(finished), cwd=tmp_path, env=ascii_env, fresh=True)
    assert "rho" in best.stdout
    refused = _run("sample", "--model", str(SEARCH[1]), "--rho-top", "0.5", "-o", "x.png",
                   cwd=tmp_path, env=ascii_env, fresh=True)
    _one_error(refused, "--rho-bottom")
    # Sizes that would fail only after the trials ran are refused before them.
    big = [("search", *SEARCH, "--db", str(tmp_path / "v.db"), "--validation-n", n)
           for n in ("1000000000", "50001")]
    for result in _runs(big, tmp_path):
        _one_error(result, "--validation-n", "--allow-large-rungs")
    assert not list(tmp_path.glob("v.db*"))


def _assert_columns_align(output: str) -> None:
    """Every row of the table in ``output`` has its column rules where the header's rule
    line has them (an ASCII table: rows ``|a |b|``, the rule under the header ``|--+-|``)."""
    rule = next(line for line in output.splitlines() if re.fullmatch(r"\|[-+]+\|", line))
    rows = [line for line in output.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, output                           # header, rule, one row at least
    columns = [i for i, c in enumerate(rule) if c in "|+"]
    for row in rows:
        assert [i for i, c in enumerate(row) if c in "|+"] == columns, output


# -- 6. nothing is created by a command that fails -------------------------------------------


def test_nothing_is_created_by_a_command_that_fails(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, study in (("plain.db", "theirs"), ("clash.db", STUDY)):
        created = optuna.create_study(study_name=study, storage=f"sqlite:///{work / name}")
        created.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    before = _files(work)
    commands = [
        # Seeds past 2**63 − 1, in the trials' range and only in the validation's.
        ("search", *SEARCH, "--db", str(work / "fresh.db"), "--seed", str(2**64)),
        ("search", *SEARCH, "--db", str(work / "plain.db"), "--seed", str(2**63 - 80)),
        ("search", *SEARCH, "--db", str(work / "fresh.db"), "--validation-n", "10000000000"),
        # A plain Optuna database whose study of the same name skiptune did not create.
        ("search", *SEARCH, "--db", str(work / "clash.db")),
    ]
    results = _runs(commands, work)
    _one_error(results[0], "--seed", "pass a --seed below")
    _one_error(results[1], "--seed", "pass a --seed below")
    _one_error(results[2], "--validation-n")
    _one_error(results[3], "was not created by skiptune")
    assert _files(work) == before         # no fresh.db, no lock file, no added tables


# -- 7. adapters that exit -------------------------------------------------------------------


_EXITING = '''
import dataclasses
import sys

from tests.models.additive_unet import adapter as _tiny

def _exit_zero(net, x, sigma):
    sys.exit(0)

def _exit_message(net, x, sigma):
    raise SystemExit("the adapter gave up")

def exits_zero():
    return dataclasses.replace(_tiny(), denoise=_exit_zero)

def exits_with_message():
    return dataclasses.replace(_tiny(), denoise=_exit_message)

def exits_when_called():
    sys.exit(3)
'''


def test_adapters_that_exit(tmp_path: Path) -> None:
    (tmp_path / "exiting.py").write_text(_EXITING)
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    common = ("--nfe", "3", "--rungs", "4,8", "--trials", "2", "--device", "cpu", "-q",
              "--features", str(_feature_net(tmp_path)), "--ref", str(_reference(tmp_path)))
    specs = ("exiting:exits_zero", "exiting:exits_with_message", "exiting:exits_when_called",
             "exits_on_import:adapter")
    results = _runs([("search", "--model", spec, *common, "--db", str(tmp_path / f"{i}.db"))
                     for i, spec in enumerate(specs)], tmp_path)
    _one_error(results[0], "denoise called sys.exit(0)")
    _one_error(results[1], "denoise called sys.exit('the adapter gave up')")
    _one_error(results[2], "adapter 'exiting:exits_when_called' called sys.exit(3)")
    _one_error(results[3], "cannot import adapter 'exits_on_import:adapter'", "sys.exit(0)")
    for result in results:
        assert result.returncode == 1


# -- 8. workers and signals ------------------------------------------------------------------


def _running_trials(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _search_in_a_trial(db: Path, *, hangup: signal.Handlers) -> subprocess.Popen[str]:
    """A long search, started with SIGHUP handled as ``hangup`` (SIG_DFL: a terminal's child,
    whatever the suite was started under; SIG_IGN: under ``nohup``), two seconds into a trial."""
    process = subprocess.Popen(
        [sys.executable, "-m", "skiptune.cli", "search", *SEARCH, "--trials", "30",
         "--no-validation", "--db", str(db)],
        cwd=db.parent, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, hangup),
    )
    deadline = time.monotonic() + 180
    while _running_trials(db) == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)                              # inside the trial, past its start
    return process


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_workers_end_on_a_hangup_like_a_termination(signum: int, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    process = _search_in_a_trial(db, hangup=signal.SIG_DFL)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (process.returncode, err)
    assert "Traceback" not in out + err
    (line,) = err.splitlines()
    assert line.startswith("error: interrupted") and "re-queued" in line, line
    assert _running_trials(db) == 0             # the trial was failed, not left RUNNING


def test_a_search_under_nohup_keeps_running_through_a_hangup(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    process = _search_in_a_trial(db, hangup=signal.SIG_IGN)
    process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    still_running = process.poll() is None
    process.send_signal(signal.SIGTERM)          # then ended as a scheduler would
    _, err = process.communicate(timeout=120)
    assert still_running, err
    assert process.returncode == 130 and err.startswith("error: interrupted"), err


def test_workers_finish_when_the_resource_tracker_is_killed(tmp_path: Path) -> None:
    # The tracker is a helper process that multiprocessing starts beside the workers; killed
    # mid-search (by hand, by an OOM killer), it must cost nothing: no KeyError tracebacks
    # from the workers or the parent, and the study reaches its total.
    require_postgres()
    with pg_schema() as url:
        process, _workers = _two_workers_running(url, tmp_path)
        (tracker,) = _children_of(process.pid, b"resource_tracker")
        os.kill(tracker, signal.SIGKILL)
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "Traceback" not in err and "KeyError" not in err and "resource_tracker" not in err
        assert all(line.startswith("note: ") for line in err.splitlines()), err
        assert len(set(err.splitlines())) == len(err.splitlines()), err   # each note once
        (summary,) = json.loads(out)
        assert summary["finished"] == summary["trials_total"] == 8


# -- 9. Stable Diffusion and FreeU, as a user sees them --------------------------------------


def test_stable_diffusion_and_freeu_as_a_user_sees_them(finished: Path, tmp_path: Path) -> None:
    from skiptune.cli import _compact_schedule, _schedule_text
    from skiptune.errors import ConfigurationError
    from skiptune.freeu import FreeU
    from skiptune.models import load_model
    from skiptune.schedule import TuningSchedule
    from skiptune.tuner import SearchSpace
    from tests.models.test_sd import freeu_against_diffusers
    from tests.models.tiny_sd import SD_UNET, save_embeddings, save_pipeline

    # A FreeU study's row shows its FreeU values, and a σ window beside ρ, not "1.00→1.00".
    freeu = TuningSchedule(rho_bottom=1.0, freeu=FreeU(1.5, 1.6, 0.9, 0.2)).to_dict()
    assert _compact_schedule(freeu) == "1.00→1.00 b1.50/1.60 s0.90/0.20"
    both = TuningSchedule(rho_bottom=0.6, shape="power", gamma=0.7, freeu=FreeU(1.1, 1.2, 0.5, 0.3),
                       sigma_lo=0.2, sigma_hi=5.0).to_dict()
    assert _compact_schedule(both) == "0.60→1.00 γ0.70 b1.10/1.20 s0.50/0.30 σ0.2–5"
    # A gain that rounds to zero is 0%, never -0%.
    from skiptune.tuner.results import percent

    assert [percent(v) for v in (-0.004, 0.0, 0.006, -0.2)] == ["0%", "0%", "1%", "-20%"]
    # Guidance: any scale ≤ 1 turns it off (as the help says); an absurd one is refused.
    folder = save_pipeline(tmp_path / "sd")
    embeddings = str(save_embeddings(tmp_path / "prompts.safetensors"))
    for scale in (-1.0, 0.0, 1.0):
        load_model(folder, device="cpu",
                   conditioning={"embeddings": embeddings, "guidance_scale": scale})
    for scale in (1e300, float("inf"), 101.0):
        with pytest.raises(ConfigurationError, match="guidance scale must be a finite number"):
            load_model(folder, device="cpu",
                       conditioning={"embeddings": embeddings, "guidance_scale": scale})
    # FreeU as diffusers runs it: the FFT also at s = 1, and any factor 0 turns it off (so the
    # default s range starts above 0, and a 0 in a user's range measures the plain model).
    for values in ((1.5, 1.6, 1.0, 1.0), (1.5, 1.6, 0.0, 0.2), (0.0, 1.6, 0.9, 0.2),
                   (1.3, 1.4, 0.9, 0.0)):
        plain, ours, reference = freeu_against_diffusers(tmp_path / str(values), SD_UNET,
                                                         values)
        assert torch.equal(ours, reference), values
        assert torch.equal(ours, plain) == (0.0 in values), values
    assert TuningSchedule(rho_bottom=1.0, freeu=FreeU(1.5, 1.6, 0.0, 0.2)).is_identity
    assert SearchSpace(kind="freeu").freeu_s[0] > 0
    # The export names every skip without the model: the layout is stored with the study. A
    # study stored before that keeps a null rho_factors (the model then names them).
    names = [site.name for site in load_model(SEARCH[1], device="cpu").skip_sites]
    older = tmp_path / "older.db"
    shutil.copy(finished, older)
    with sqlite3.connect(older) as connection:
        connection.execute("DELETE FROM study_user_attributes WHERE key = ?",
                           ("skiptune_skip_layout",))
    for db, expected in ((finished, names), (older, None)):
        out = tmp_path / f"{db.stem}.json"
        written = _run("export", "--nfe", "3", "-o", str(out), "--db", str(db), cwd=tmp_path)
        assert written.returncode == 0, written.stderr
        factors = json.loads(out.read_text())["rho_factors"]
        assert (list(factors) if factors is not None else None) == expected
    with_model = _run("export", "--nfe", "3", "-o", str(tmp_path / "m.json"), "--db", str(older),
                      "--model", SEARCH[1], cwd=tmp_path)
    assert list(json.loads((tmp_path / "m.json").read_text())["rho_factors"]) == names
    assert with_model.returncode == 0
    # The export's "wrote" line (and every full schedule text) shows a σ window.
    assert "σ window 0.2–5" in _schedule_text(both)
    # The plot labels validated points with the validation's N, not the search's.
    from skiptune.tuner.results._plot import measured_at
    from skiptune.tuner.results._reading import front_report

    (report,) = front_report(finished)
    assert report.num_samples == 32 and all(r.validation for r in report.tuned)
    validation_seed = report.tuned[0].validation["seed"]
    validated = f"N = 32, seeds {validation_seed}–{validation_seed + 31}, validated"
    assert measured_at(report.tuned) == validated
    unvalidated = [dataclasses.replace(r, validation=None) for r in report.tuned]
    assert measured_at(unvalidated) == "N = 32, seeds 0–31"
    assert measured_at([*unvalidated, *report.tuned]) == f"N = 32, seeds 0–31; {validated}"
    # --trials that known points use up: one note says nothing is searched.
    from skiptune.tuner.search._service import known_points_note
    for kind, trials in (("rho+freeu", 3), ("rho+freeu", 5), ("freeu", 2), ("rho", 4)):
        space = SearchSpace(kind=kind, freeu_known=(1.5, 1.6, 0.9, 0.2))
        note = known_points_note(trials=trials, space=space)
        assert note is not None and "nothing is searched" in note, (kind, trials)
    space = SearchSpace(kind="rho+freeu", freeu_known=(1.5, 1.6, 0.9, 0.2))
    assert known_points_note(trials=6, space=space) is None
    # Piped progress is one whole line per trial at 80 columns (no "…"), written as it ends.
    import io

    from rich.console import Console

    from skiptune import tuner
    from skiptune.cli import _SearchLog, _SearchPhase

    for status_schedule in (freeu, both):
        piped = io.StringIO()
        with _SearchLog(Console(file=piped, width=80), _SearchPhase()) as progress:
            progress(tuner.StudyStarted(study_name="s", nfe=9, sampler="heun", trials_total=30,
                                        finished=2, resumed=False))
            progress(tuner.TrialFinished(study_name="s", trial_number=3, state="complete",
                                         value=1.0, schedule=status_schedule, best_value=1.0,
                                         baseline_value=2.0, finished=3, trials_total=30,
                                         seconds=1.0))
        lines = piped.getvalue().splitlines()
        assert len(lines) == 2 and "…" not in lines[1] and "trial 3/30 #3" in lines[1], lines
        assert lines[1].count(" b1.") == 1, lines
    # A bare UNet2DConditionModel folder samples latents: searching it with a built-in feature
    # network, or writing its samples as a PNG, is one line naming the pipeline folder.
    bare = str(folder / "unet")
    prompts = ("--embeddings", embeddings, "--device", "cpu")
    refused = _runs([
        ("search", "--model", bare, *prompts, "--nfe", "3", "--db", str(tmp_path / "b.db")),
        ("search", "--model", bare, *prompts, "--nfe", "3", "--features", "inception",
         "--db", str(tmp_path / "b.db")),
        ("sample", "--model", bare, *prompts, "--nfe", "3", "-n", "2", "-o",
         str(tmp_path / "x.png")),
    ], tmp_path)
    for result in refused:
        _one_error(result, "4-channel latents, not images", "pipeline folder with its vae/")
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "x.png").exists()
