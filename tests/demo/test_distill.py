"""Consistency distillation of the demo model, and the student it shipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import skiptune.demo.distill as distilling
from skiptune import load_model
from skiptune.demo.distill import DistillSettings, distill
from skiptune.objectives import ObjectiveSettings, build_objective
from skiptune.schedule import TuningSchedule
from tests.tuner.helpers import DEMO, REPO

STUDENT = REPO / "skiptune" / "assets" / "demo_consistency.pt"
SETTINGS = DistillSettings(steps=4, batch_size=4, grid_steps=6)


def _run(tmp: Path, name: str, settings: DistillSettings = SETTINGS) -> Path:
    return distill(settings, teacher_path=DEMO, out=tmp / f"{name}.pt",
                   state_path=tmp / f"{name}-state.pt", device=torch.device("cpu"),
                   save_every=2)


def test_an_interrupted_run_resumes_to_the_same_student(tmp_path: Path, monkeypatch) -> None:
    straight = load_model(_run(tmp_path, "straight"))
    calls = {"n": 0}
    real_loss = distilling.consistency_loss

    def loss_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:             # after the state of step 2 was saved
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(distilling, "consistency_loss", loss_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed")
    monkeypatch.setattr(distilling, "consistency_loss", real_loss)
    resumed = load_model(_run(tmp_path, "resumed"))
    assert resumed.fingerprint == straight.fingerprint
    assert resumed.default_sampler == "consistency"
    assert resumed.metadata["distillation"]["steps_done"] == 4
    # A finished run may be lengthened: the same state, more steps.
    longer = load_model(_run(tmp_path, "resumed", DistillSettings(steps=6, batch_size=4,
                                                                  grid_steps=6)))
    assert longer.metadata["distillation"]["steps_done"] == 6
    with pytest.raises(SystemExit, match="other settings"):
        _run(tmp_path, "resumed", DistillSettings(steps=8, batch_size=8, grid_steps=6))


def test_the_shipped_student_samples_in_one_step_far_better_than_its_teacher() -> None:
    # One step of the teacher is D(σ_max·z; σ_max), a blurred mean digit; the student's is a
    # digit. N = 256 on seeds the demo's tests use elsewhere; measured 11.6 against 330.
    student, teacher = load_model(STUDENT), load_model(DEMO)
    assert student.default_sampler == "consistency" and student.family == "skiptune"
    values = {}
    for name, model, sampler in (("student", student, "consistency"),
                                 ("teacher", teacher, "heun")):
        objective = build_objective(model, ObjectiveSettings(rungs=(256,)).for_budget(
            sampler=sampler, nfe=1, seed=10_000), progress=False)
        values[name] = objective.evaluate(TuningSchedule(rho_bottom=1.0, rho_top=1.0)).value
    assert values["student"] < 30 < 200 < values["teacher"], values
