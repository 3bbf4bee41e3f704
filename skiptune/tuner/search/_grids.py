"""Sample grids kept with a validated study, as Optuna artifacts of their trials.

People judge a schedule by eye before they trust a number: when a study is validated, ρ = 1,
each known point (the paper's schedules, FreeU's values) and each validated candidate get a
4 × 4 grid of samples on the same seeds, stored as a PNG artifact of its trial. The grid seeds
are the validation's first: a candidate validated now hands over its first 16 images, so only
the known points validation did not measure are sampled for a grid. The report
(``skiptune report``) and optuna-dashboard show them. Storing an image is a courtesy, never a
condition: a failure is one note and the validation stands.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from skiptune._optuna_private import attach_artifact_meta, trial_id
from skiptune.sampling import sample_images, save_images
from skiptune.storage import artifact_folder
from skiptune.tuner.search._events import EventCallback, Note
from skiptune.tuner.study import (
    GRID_ATTR,
    GRID_PREFIX,
    NUM_SKIPS_ATTR,
    StudyConfig,
    grid_artifacts,
    role_of,
    schedule_from_params,
)

__all__ = ["GRID_SAMPLES", "grid_trials", "store_grids"]

GRID_SAMPLES = 16          # a 4 × 4 grid per trial: enough to judge by eye, small to store


def grid_trials(trials: Sequence[FrozenTrial], candidates: Sequence[int]) -> list[FrozenTrial]:
    """The trials that get a grid, by number: ρ = 1, each complete known point (``paper``,
    ``freeu``) and each validated candidate (trial numbers ``candidates``)."""
    wanted = set(candidates)
    return [
        t for t in trials
        if t.state == TrialState.COMPLETE
        and (t.number in wanted or role_of(t) in ("baseline", "paper", "freeu"))
    ]


def store_grids(
    storage: Any,                    # skiptune.storage.Storage
    study: optuna.Study,
    config: StudyConfig,
    model: Any,                      # the TunableModel the study was searched on
    candidates: Sequence[int],       # trial numbers of the validated candidates
    *,
    seed: int,                       # grid sample j uses noise seed seed + j
    artifacts: str | Path | None,    # the artifact folder; None: beside a SQLite database
    emit: EventCallback,
    drawn: Mapping[int, torch.Tensor] | None = None,   # grids already sampled, by trial number
) -> int:
    """Store a grid of ``GRID_SAMPLES`` samples for each of :func:`grid_trials` that has none.

    A trial in ``drawn`` (its validation's first images, on these seeds) is not sampled
    again. Returns how many were stored now. Call under the study's lock (workers store each
    once).
    """
    folder = artifact_folder(storage.url, artifacts)
    if folder is None:
        emit(Note(message=f"{study.study_name}: sample grids are not stored (a server database "
                          "has no folder beside it; pass --artifacts FOLDER to keep them)"))
        return 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(str(folder))
    except OSError as e:
        emit(Note(message=f"{study.study_name}: sample grids are not stored: cannot use "
                          f"{folder} ({e.strerror or e}); pass --artifacts FOLDER"))
        return 0
    study.set_user_attr(GRID_ATTR, {"seed": seed, "num_samples": GRID_SAMPLES})
    study.set_user_attr(NUM_SKIPS_ATTR, int(model.num_skips))
    stored = 0
    for trial in grid_trials(study.get_trials(deepcopy=False), candidates):
        if any((folder / a).is_file() for a in grid_artifacts(trial)):
            continue                       # stored by an earlier validation or worker
        try:
            _store_one(storage, store, study, config, model, trial, seed=seed,
                       images=(drawn or {}).get(trial.number))
        # A grid is a courtesy: whatever goes wrong drawing or writing it (a full disk, a
        # schedule whose samples diverge, a store that refuses) must not fail the validation.
        except Exception as e:
            emit(Note(message=f"{study.study_name}: could not store the sample grid of trial "
                              f"{trial.number} ({type(e).__name__}: {e}); the results stand"))
            continue
        stored += 1
    return stored


def _store_one(storage: Any, store: FileSystemArtifactStore, study: optuna.Study,
               config: StudyConfig, model: Any, trial: FrozenTrial, *, seed: int,
               images: torch.Tensor | None) -> None:
    """Sample the trial's grid (unless ``images`` holds it) into a temporary PNG, write it to
    the store, then record it on the trial: a reader never finds a record without its whole
    file."""
    if images is None:
        images = sample_images(
            model, schedule=schedule_from_params(trial.params), nfe=config.nfe,
            sampler=config.sampler, num_samples=GRID_SAMPLES, seed=seed,
            batch_size=GRID_SAMPLES, schedule_exponent=config.objective.schedule_exponent,
        )
    filename = f"{GRID_PREFIX}-{trial.number}.png"
    with tempfile.TemporaryDirectory(prefix="skiptune-grid-") as temporary:
        path = save_images(images, Path(temporary) / filename)
        artifact_id = str(uuid.uuid4())
        with path.open("rb") as handle:
            store.write(artifact_id, handle)
    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename, mimetype="image/png",
                        encoding=None)
    # skiptune's own engine: Optuna's tables are in the same database.
    attach_artifact_meta(storage.engine, trial_id(trial), meta)
