"""Out of memory on a batch: the objective halves the batch, says so once, scores the same.

The allocator is made to fail by replacing the sampler the objective calls with one that
raises as torch does for batches larger than a device would hold; everything else (the
demo model, the digit features, the shipped reference) is real.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console

import skiptune.objectives._objective as objective_module
import skiptune.objectives._samples as samples_module
from skiptune import InsufficientMemoryError, TuningSchedule
from skiptune.objectives import (
    ObjectiveConfig,
    ObjectiveSettings,
    ProxyObjective,
    build_objective,
)
from skiptune.storage import open_storage
from skiptune.tuner import BatchSizeReduced, SearchConfig, search
from tests.tuner.helpers import DEMO

SCHEDULE = TuningSchedule(rho_bottom=0.7)
CUDA_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)"
CPU_MESSAGE = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
               "allocate memory: you tried to allocate 400000000008 bytes.")


def _objective(model: Any, batch_size: int) -> ProxyObjective:
    config = ObjectiveConfig(sampler="heun", nfe=3, rungs=(8, 16), batch_size=batch_size)
    return build_objective(model, config, progress=False)


def _memory_of(images: int, error: Callable[[], BaseException],
               monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make sampling fail with ``error()`` above ``images`` per batch; returns the sizes tried."""
    real = objective_module.sample
    tried: list[int] = []

    def sample(model: Any, noise: torch.Tensor, **options: Any) -> torch.Tensor:
        tried.append(noise.shape[0])
        if noise.shape[0] > images:
            raise error()
        return real(model, noise, **options)

    # evaluate() samples through _samples, evaluate_many() calls sample itself.
    monkeypatch.setattr(samples_module, "sample", sample)
    monkeypatch.setattr(objective_module, "sample", sample)
    return tried


def test_a_batch_out_of_memory_is_halved_and_scores_as_that_batch_size_does(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsplit = _objective(demo_model, 16).evaluate(SCHEDULE).value
    in_fours = _objective(demo_model, 4).evaluate(SCHEDULE).value
    tried = _memory_of(4, lambda: torch.OutOfMemoryError(CUDA_MESSAGE), monkeypatch)
    objective = _objective(demo_model, 16)
    told: list[tuple[int, int, str]] = []
    value = objective.evaluate(SCHEDULE, on_batch_reduced=lambda *a: told.append(a)).value
    # Rung 1 asks for 8 at once, then 4, and 4 it stays: the same batches as batch_size 4,
    # seeded per image, so the same value bit for bit.
    assert tried == [8, 4, 4, 4, 4]
    assert told == [(8, 4, CUDA_MESSAGE)]
    assert value == in_fours
    # Against one batch per rung only float rounding differs (see test_corpus for why it
    # shows at 3 NFE): the split changes nothing else.
    assert value == pytest.approx(unsplit, rel=1e-4)
    # The smaller batch is kept: the next trial neither fails nor says anything again.
    tried.clear()
    again = objective.evaluate(SCHEDULE, on_batch_reduced=lambda *a: told.append(a)).value
    assert again == value and tried == [4, 4, 4, 4] and len(told) == 1
    assert objective.config.batch_size == 16                    # the stored config stands


def test_the_cpu_allocators_error_is_out_of_memory_too(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _memory_of(4, lambda: RuntimeError(CPU_MESSAGE), monkeypatch)
    told: list[tuple[int, int, str]] = []
    _objective(demo_model, 8).evaluate(SCHEDULE, on_batch_reduced=lambda *a: told.append(a))
    assert [(failed, now) for failed, now, _ in told] == [(8, 4)]
    assert "DefaultCPUAllocator" in told[0][2] and "\n" not in told[0][2]


def test_other_runtime_errors_are_not_retried(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = _memory_of(0, lambda: RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
                       monkeypatch)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        _objective(demo_model, 8).evaluate(SCHEDULE)
    assert tried == [8]


def test_one_image_that_does_not_fit_is_one_clear_error(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = _memory_of(0, lambda: torch.OutOfMemoryError(CUDA_MESSAGE), monkeypatch)
    with pytest.raises(InsufficientMemoryError, match="even with one image per batch") as info:
        _objective(demo_model, 4).evaluate(SCHEDULE)
    assert tried == [4, 2, 1]
    assert "\n" not in str(info.value) and "another device with device" in str(info.value)


def test_the_search_fails_and_requeues_a_trial_that_never_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _memory_of(0, lambda: torch.OutOfMemoryError(CUDA_MESSAGE), monkeypatch)
    events: list[Any] = []
    db = tmp_path / "s.db"
    with pytest.raises(InsufficientMemoryError):
        search(DEMO, SearchConfig(nfe=3, trials=2,
                                  objective=ObjectiveSettings(rungs=(2, 4), batch_size=2)),
               db=db, device="cpu", on_event=events.append)
    reduced = [e for e in events if isinstance(e, BatchSizeReduced)]
    assert [(e.failed, e.batch_size, e.trial_number) for e in reduced] == [(2, 1, 0)]
    storage = open_storage(db)
    trials = optuna.load_study(study_name="skiptune-demo_unet-heun-nfe3",
                               storage=storage.optuna_storage()).get_trials()
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.user_attrs["failure_kind"] == "out-of-memory"
    # The baseline is measured on a machine with more memory when the command is rerun there.
    (queued,) = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
    assert queued.state == TrialState.WAITING and queued.params == failed.params
    storage.dispose()


def test_the_progress_display_prints_the_warning_in_one_line() -> None:
    from skiptune.cli import _SearchProgress

    buffer = io.StringIO()
    console = Console(file=buffer, width=40, force_terminal=False)
    event = BatchSizeReduced(study_name="skiptune-demo_unet-heun-nfe3", trial_number=3,
                             failed=128, batch_size=64, reason=CUDA_MESSAGE)
    with _SearchProgress(console) as progress:
        progress(event)
    (line,) = [line for line in buffer.getvalue().splitlines() if line.startswith("warning:")]
    assert "out of memory with 128 images per batch" in line
    assert "continuing with 64 per batch" in line and CUDA_MESSAGE in line


def test_evaluate_many_halves_the_batch_and_scores_as_that_batch_size_does(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules = [SCHEDULE, TuningSchedule(rho_bottom=0.9)]
    in_fours = _objective(demo_model, 4).evaluate_many(schedules)
    tried = _memory_of(4, lambda: torch.OutOfMemoryError(CUDA_MESSAGE), monkeypatch)
    objective = _objective(demo_model, 16)
    told: list[tuple[int, int, str]] = []
    outcomes = objective.evaluate_many(schedules, on_batch_reduced=lambda *a: told.append(a))
    # 8 images of each candidate (16) fail, then 4 of each (8), then 2 of each fit: the batches
    # of batch_size 4, seeded per image, so the same values bit for bit.
    assert tried == [16, 8] + [4] * 8
    assert told == [(16, 8, CUDA_MESSAGE), (8, 4, CUDA_MESSAGE)]
    assert [o.value for o in outcomes] == [o.value for o in in_fours]   # type: ignore[union-attr]
    assert objective.batch_size == 4 and objective.config.batch_size == 16


def test_evaluate_many_below_one_image_per_candidate_samples_them_in_turn(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules = [SCHEDULE, TuningSchedule(rho_bottom=0.9)]
    config = ObjectiveConfig(sampler="heun", nfe=3, rungs=(2, 4), batch_size=4)
    alone = [build_objective(demo_model, config, progress=False).evaluate(s).value
             for s in schedules]
    tried = _memory_of(1, lambda: RuntimeError(CPU_MESSAGE), monkeypatch)
    told: list[tuple[int, int, str]] = []
    objective = build_objective(demo_model, config, progress=False)
    outcomes = objective.evaluate_many(schedules, on_batch_reduced=lambda *a: told.append(a))
    assert [(failed, now) for failed, now, _ in told] == [(4, 2), (2, 1)]
    assert tried == [4, 2] + [1] * 8
    assert [o.value for o in outcomes] == pytest.approx(alone, rel=1e-4)  # type: ignore[union-attr]


def test_evaluate_many_gives_up_with_one_clear_error(
    demo_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = _memory_of(0, lambda: torch.OutOfMemoryError(CUDA_MESSAGE), monkeypatch)
    with pytest.raises(InsufficientMemoryError, match="even with one image per batch"):
        _objective(demo_model, 4).evaluate_many([SCHEDULE, TuningSchedule(rho_bottom=0.9)])
    assert tried == [4, 2, 1]
