"""Export the best stored schedule at one step budget to a file (the format: skiptune.exported)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from skiptune._files import check_output_path, write_atomically
from skiptune.exported import ExportedSchedule, check_weights
from skiptune.schedule import TuningSchedule
from skiptune.storage import FrontRecord, Storage
from skiptune.tuner.results._labels import gain_established, gain_text, measured_on
from skiptune.tuner.results._reading import one_record, reading_storage, select_records
from skiptune.tuner.study import SKIP_LAYOUT_ATTR

if TYPE_CHECKING:
    from skiptune.models import TunableModel

__all__ = ["export_schedule"]


def export_schedule(
    db: str | Path | Storage | None,
    *,
    nfe: int,
    sampler: str | None = None,
    group: str | None = None,
    path: str | Path | None = None,
    model: TunableModel | str | Path | None = None,
    allow_other_weights: bool = False,
    device: str | None = None,           # where to load ``model`` given as a path
    trust_pickle: bool = False,          # let ``load_model`` unpickle ``model`` given as a path
    revision: str | None = None,         # of ``model`` given as a hub id, see ``load_model``
    variant: str | None = None,          # of ``model``'s diffusers weights, see ``load_model``
    dtype: str | None = None,            # of ``model`` given as a path, see ``load_model``
    one_step_sigma: float | None = None,  # of ``model`` given as a path, see ``load_model``
) -> ExportedSchedule:
    """The best stored schedule at ``nfe`` with how it was measured; written as JSON to ``path``.

    ``value``, ``baseline_value``, ``num_samples`` and ``seed`` say what was measured and on
    which images: the validation's N and seeds once validated (the search's own then go in
    ``validation`` as ``search_num_samples`` and ``search_seed``). ``why`` says which schedule
    was picked, why, and whether its gain over ρ = 1 is established (its interval above 0).

    The file holds the schedule, ``enable_freeu`` (FreeU's four values as
    ``pipe.enable_freeu`` takes them, when FreeU was searched) and ``rho_factors``: each skip
    site's ρ by name, bottom → top, from the skip layout stored with the study, or, for a
    study stored before skiptune kept it, from the ``model`` the study searched (loaded, or
    anything ``load_model`` takes; None then leaves ``rho_factors`` null). ``sigmas`` is the
    σ grid the sampler walked, descending to 0: always for a searched step grid, and given
    the ``model`` for its own grid.
    """
    inputs = _input_paths(db, model)
    if path is not None:   # a bad -o fails before the model or database is opened
        check_output_path(path, writes=".json", reading=inputs)
    with reading_storage(db) as storage:
        records = storage.front_records(kind="tuned")
        record = one_record(records, nfe=nfe, sampler=sampler, group=group,
                            db=storage.display_url)
        rivals = select_records(records, nfe=nfe, sampler=sampler, group=group)
        runs = storage.runs(study_name=record.study_name)
        layout = optuna.load_study(study_name=record.study_name,
                                   storage=storage.optuna_storage()).user_attrs.get(
                                       SKIP_LAYOUT_ATTR)
    exponent = runs[-1].config.get("objective", {}).get("schedule_exponent") if runs else None
    from skiptune.models import TunableModel, load_model  # torch: the read commands go without

    if model is not None and not isinstance(model, TunableModel):
        model = load_model(model, device=device, trust_pickle=trust_pickle,   # the slow part
                           revision=revision, variant=variant, dtype=dtype,
                           one_step_sigma=one_step_sigma)
    exported = ExportedSchedule(
        schedule=TuningSchedule.from_dict(record.schedule),
        nfe=record.nfe,
        sampler=record.sampler,
        value=record.value,
        baseline_value=record.baseline_value,
        metric=record.metric,
        num_samples=record.measured_num_samples,
        seed=record.measured_seed,
        model_fingerprint=record.model_fingerprint,
        study=record.study_name,
        schedule_exponent=exponent,
        validation=None if record.validation is None else {
            **record.validation, "search_num_samples": record.num_samples,
            "search_seed": record.seed},
        why=why_picked(record, rivals),
    )
    exported = dataclasses.replace(exported, sigmas=_sigmas_of(exported, model))
    if model is not None:
        check_weights(exported.model_fingerprint, model, allow_other_weights,
                      where=f"study {record.study_name}")
        layout = [site.name for site in model.skip_sites]
    if layout is not None:
        factors = exported.schedule.factors(len(layout))
        exported = dataclasses.replace(
            exported, rho_factors=dict(zip(layout, factors, strict=True)))
    if path is not None:
        write_atomically(path, exported.to_json().encode(), writes=".json")
    return exported


def why_picked(record: FrontRecord, rivals: Sequence[FrontRecord]) -> str:
    """Which schedule an export holds and why, in one sentence: the study's validated best
    (or the search's own best, not validated), the best of several samplers where the budget
    has them, and its gain over ρ = 1 with whether the interval clears 0."""
    on = measured_on(record.measured_num_samples, record.measured_seed)
    how = ("validated best" if record.validated
           else "search's own best (not validated, so biased low)")
    what = (f"picked {record.sampler}'s {how} at {record.nfe} NFE (trial "
            f"{record.trial_number}): {record.metric} {record.value:.4g} at {on}")
    others = sorted((r for r in rivals if r is not record), key=lambda r: r.value)
    if others:
        listing = ", ".join(f"{r.sampler} {r.value:.4g}" for r in others)
        what += f"; the lowest of the samplers searched at this budget (also {listing})"
    about = record.validation or {}
    if record.baseline_value:
        gain = 1 - record.value / record.baseline_value
        what += "; " + gain_text(gain, about.get("gain_low"), about.get("gain_high"),
                                 level=about.get("level"))
        if gain_established(about.get("gain_low"), about.get("gain_high")) is False:
            what += " (ρ = 1 may be as good: validate on more images)"
    return what


def _input_paths(db: object, model: object) -> list[str | Path]:
    """The files the export reads, which its output must never replace."""
    return [value for value in (db, model) if isinstance(value, str | Path)]


def _sigmas_of(exported: ExportedSchedule, model: TunableModel | None) -> list[float] | None:
    """The σ list the study's sampler walked (float32 values, as it sampled), or None where
    that needs the model and there is none."""
    from skiptune.sampling import grid_sigmas, sigma_grid, steps_for_nfe

    grid = exported.schedule.steps
    if grid is not None:
        return grid_sigmas(steps_for_nfe(exported.sampler, exported.nfe), grid).tolist()
    if model is None:
        return None
    return sigma_grid(model, sampler=exported.sampler, nfe=exported.nfe,
                      schedule_exponent=exported.schedule_exponent or 7.0).cpu().tolist()
