"""What a search says while it runs into a log file or pipe, and what a Ctrl-C says it stopped.

CliRunner's stderr is not a terminal: it stands for ``nohup``, Slurm and ``> log``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from skiptune import cli, tuner

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "skiptune" / "assets" / "demo_unet.pt"
SMALL = "self:heun:7:64"


def _search(db: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, ["search", "--model", str(DEMO), "--nfe", "3", "--device",
                                     "cpu", "--optimizer", "random", "--rungs", "8",
                                     "--validation-n", "8", "--db", str(db), *args])
    return result.exit_code, result.stderr


def test_a_log_gets_one_line_per_trial_and_per_phase(tmp_path: Path) -> None:
    code, log = _search(tmp_path / "log.db", "--trials", "5", "--ref", SMALL)
    assert code == 0, log
    lines = log.splitlines()
    assert lines[0].startswith(f"computing reference {SMALL} once: 64 samples")
    # The first batch is small, so that the estimate comes within seconds.
    assert any(line.startswith(f"reference {SMALL}: 8/64 samples (") and "left" in line
               for line in lines), log
    assert f"reference {SMALL}: 64 samples done" in log
    assert "heun 3 NFE: started at 0/5 trials" in lines
    trials = [line for line in lines if line.startswith("heun 3 NFE: trial ")]
    assert [line.split()[4] for line in trials] == ["1/5", "2/5", "3/5", "4/5", "5/5"], log
    assert "heun 3 NFE: done" in lines
    # A second search reuses the cached reference, and says so.
    code, again = _search(tmp_path / "log.db", "--trials", "5", "--ref", SMALL, "--nfe", "5")
    assert code == 0, again
    assert f"reference {SMALL}: reusing its statistics (64 samples) cached" in again
    assert "computing reference" not in again


def test_each_line_is_written_when_its_event_comes() -> None:
    out = io.StringIO()
    log = cli._SearchLog(Console(file=out, width=80), cli._SearchPhase())
    log(tuner.StudyStarted(study_name="s", nfe=9, sampler="heun", trials_total=10, finished=0,
                           resumed=False))
    assert out.getvalue() == "heun 9 NFE: started at 0/10 trials\n"
    log(tuner.TrialFinished(study_name="s", trial_number=0, state="complete", value=1.5,
                            schedule={"rho_bottom": 1.0, "rho_top": 1.0, "shape": "linear"},
                            best_value=1.5, baseline_value=1.5, finished=1, trials_total=10,
                            seconds=3.0))
    assert out.getvalue().splitlines()[1] == (
        "heun 9 NFE: trial 1/10 #0 complete 1.5 ρ 1.00→1.00 in 3 s · best 1.5 vs ρ = 1 1.5")


@pytest.mark.parametrize(("events", "said"), [
    ([], "interrupted before any trial ran"),
    ([tuner.ReferenceSampled(source=SMALL, done=0, total=64),
      tuner.ReferenceSampled(source=SMALL, done=8, total=64)],
     f"interrupted while sampling the reference {SMALL} (8/64 samples): no trial ran"),
    ([tuner.ReferenceSampled(source=SMALL, done=64, total=64, cached=True)],
     "interrupted before any trial ran"),
    ([tuner.TrialStarted(study_name="s", trial_number=0, schedule={}, role="baseline",
                         finished=0, trials_total=2)],
     "interrupted: the running trial was marked failed and re-queued"),
])
def test_an_interruption_names_only_what_was_running(events: list, said: str) -> None:
    phase = cli._SearchPhase()
    for event in events:
        phase.see(event)
    assert phase.interrupted().startswith(said)


def test_ctrl_c_while_sampling_the_reference_claims_no_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skiptune.objectives import _samples

    real = _samples.sampled_images

    def interrupted_after_one_batch(*args: object, start: int, **kwargs: object) -> object:
        if start > 0:
            raise KeyboardInterrupt
        return real(*args, start=start, **kwargs)    # type: ignore[arg-type]

    monkeypatch.setattr(_samples, "sampled_images", interrupted_after_one_batch)
    code, log = _search(tmp_path / "stop.db", "--trials", "2", "--ref", SMALL)
    assert code == 130, log
    assert log.splitlines()[-1] == (
        f"error: interrupted while sampling the reference {SMALL} (8/64 samples): no trial "
        "ran, and the reference is stored only once complete; rerun the same command to "
        "sample it again")
    assert "trial" not in log.replace("no trial ran", "")
