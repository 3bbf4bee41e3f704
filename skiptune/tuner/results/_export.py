"""Export the best stored schedule at one step budget to a file (the format: skiptune.exported)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from skiptune._files import check_output_path, write_atomically
from skiptune.exported import ExportedSchedule, check_weights
from skiptune.schedule import TuningSchedule
from skiptune.storage import Storage
from skiptune.tuner.results._reading import one_record, reading_storage
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
) -> ExportedSchedule:
    """The best stored schedule at ``nfe`` with how it was measured; written as JSON to ``path``.

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
        record = one_record(
            storage.front_records(kind="tuned"), nfe=nfe, sampler=sampler, group=group,
            db=storage.display_url,
        )
        runs = storage.runs(study_name=record.study_name)
        layout = optuna.load_study(study_name=record.study_name,
                                   storage=storage.optuna_storage()).user_attrs.get(
                                       SKIP_LAYOUT_ATTR)
    exponent = runs[-1].config.get("objective", {}).get("schedule_exponent") if runs else None
    from skiptune.models import TunableModel, load_model  # torch: the read commands go without

    if model is not None and not isinstance(model, TunableModel):
        model = load_model(model, device=device, trust_pickle=trust_pickle,   # the slow part
                           revision=revision, variant=variant, dtype=dtype)
    exported = ExportedSchedule(
        schedule=TuningSchedule.from_dict(record.schedule),
        nfe=record.nfe,
        sampler=record.sampler,
        value=record.value,
        baseline_value=record.baseline_value,
        metric=record.metric,
        num_samples=record.num_samples,
        seed=record.seed,
        model_fingerprint=record.model_fingerprint,
        study=record.study_name,
        schedule_exponent=exponent,
        validation=record.validation,
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
