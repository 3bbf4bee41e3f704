"""Read results back from a database: study summaries, the stored fronts, the best schedule.

Every reader opens the database read-only: reading never creates, migrates or changes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from skiptune.errors import ConfigurationError
from skiptune.exported import check_weights
from skiptune.schedule import TuningSchedule
from skiptune.storage import FrontRecord, Storage, open_storage
from skiptune.tuner.results._pareto import SpeedClaim, describe_claim, speed_claims
from skiptune.tuner.results._summary import StudySummary, summarize
from skiptune.tuner.study import CONFIG_ATTR, StudyConfig

if TYPE_CHECKING:
    from skiptune.models import TunableModel

__all__ = [
    "FrontReport",
    "best_schedule",
    "front_report",
    "list_studies",
    "one_record",
    "reading_storage",
    "stored_studies",
]


@contextmanager
def reading_storage(db: str | Path | Storage | None) -> Iterator[Storage]:
    """The database to read results from, open while the block runs; a SQLite file that is
    not there is an error. One opened here is closed (its engine disposed) at the block's
    end; a ``Storage`` the caller passed stays the caller's to close."""
    if isinstance(db, Storage):
        yield db
        return
    with open_storage(db, read_only=True) as storage:
        yield storage


def stored_studies(
    storage: Storage, *, group: str | None = None
) -> Iterator[tuple[optuna.Study, StudyConfig]]:
    """Each skiptune study in ``storage`` (of one group) with its stored configuration.

    Studies another tool put in the same database (no stored configuration) are passed over.
    """
    optuna_storage = storage.optuna_storage()
    for frozen in optuna.get_all_study_summaries(optuna_storage, include_best_trial=False):
        data = frozen.user_attrs.get(CONFIG_ATTR)
        if data is None:
            continue
        config = StudyConfig.from_dict(data)
        if group is not None and config.group != group:
            continue
        yield optuna.load_study(study_name=frozen.study_name, storage=optuna_storage), config

def list_studies(
    db: str | Path | Storage | None = None, *, group: str | None = None
) -> list[StudySummary]:
    """Summaries of every skiptune study in the database (of one group), by group, sampler, NFE."""
    with reading_storage(db) as storage:
        summaries = [
            summarize(study, config) for study, config in stored_studies(storage, group=group)
        ]
    return sorted(summaries, key=lambda s: (s.group, s.sampler, s.nfe))

@dataclass(frozen=True)
class FrontReport:
    """The stored Pareto fronts of one comparison key, and what they say about speed."""

    comparison_key: str
    metric: str
    num_samples: int
    seed: int
    tuned: list[FrontRecord]           # every tuned point, by NFE (``on_front`` flags the front)
    baseline: list[FrontRecord]
    claims: list[SpeedClaim]

    @property
    def sentence(self) -> str:
        if self.claims:
            return describe_claim(self.claims[0])
        same = [
            (t, b) for t in self.tuned for b in self.baseline
            if t.study_name == b.study_name and b.value > 0
        ]
        if same:
            t, b = min(same, key=lambda tb: tb[0].value / tb[1].value)
            return (
                f"tuned improves {t.metric} by {1 - t.value / b.value:.0%} at {t.nfe} NFE; no "
                "baseline measured at a higher NFE is matched yet (search more budgets, e.g. "
                f"--nfe {2 * t.nfe + 1}, to compare speed)"
            )
        return "no tuned and baseline points measured alike yet"

def _by_nfe(record: FrontRecord) -> tuple[int, float]:
    return (record.nfe, record.value)

def front_report(
    db: str | Path | Storage | None = None, *, group: str | None = None
) -> list[FrontReport]:
    """The stored fronts, one report per set of alike measurements (metric, N, seeds...)."""
    with reading_storage(db) as storage:
        records = storage.front_records(group=group)
    reports = []
    keys = sorted({(r.comparison_key, r.metric, r.num_samples, r.seed) for r in records})
    for key, metric, num_samples, seed in keys:
        alike = [r for r in records if r.comparison_key == key]
        tuned = sorted((r for r in alike if r.kind == "tuned"), key=_by_nfe)
        baseline = sorted((r for r in alike if r.kind == "baseline"), key=_by_nfe)
        reports.append(
            FrontReport(
                comparison_key=key,
                metric=metric,
                num_samples=num_samples,
                seed=seed,
                tuned=tuned,
                baseline=baseline,
                claims=speed_claims(tuned, baseline),
            )
        )
    return reports

def _select_records(
    records: Sequence[FrontRecord], *, nfe: int, sampler: str | None, group: str | None
) -> list[FrontRecord]:
    return [
        r for r in records
        if r.kind == "tuned" and r.nfe == nfe
        and (sampler is None or r.sampler == sampler)
        and (group is None or r.study_group == group)
    ]

def one_record(
    records: Sequence[FrontRecord], *, nfe: int, sampler: str | None, group: str | None,
    db: str,
) -> FrontRecord:
    """The tuned record at ``nfe`` (of ``sampler`` and ``group`` when given). Without a
    sampler, of several samplers' studies in one group measured alike, the lowest value: the
    best (sampler, steps, ρ) of that budget. Other ambiguity is a ConfigurationError."""
    chosen = _select_records(records, nfe=nfe, sampler=sampler, group=group)
    if not chosen:
        have = sorted({(r.study_group, r.sampler, r.nfe) for r in records if r.kind == "tuned"})
        listing = ", ".join(f"{g}/{s}/{n} NFE" for g, s, n in have) or "none"
        raise ConfigurationError(
            f"no searched schedule at {nfe} NFE"
            + (f" with sampler {sampler}" if sampler else "")
            + (f" in group {group}" if group else "")
            + f" in {db}; studies with results: {listing}"
        )
    if len(chosen) > 1 and sampler is None:
        # Several samplers searched one budget in one group, measured alike: the best of them.
        keys = {(r.study_group, r.comparison_key) for r in chosen}
        if len(keys) == 1:
            return min(chosen, key=lambda r: (r.value, r.sampler))
    if len(chosen) > 1:
        listing = ", ".join(f"{r.study_group}/{r.sampler}" for r in chosen)
        raise ConfigurationError(
            f"{len(chosen)} studies have a schedule at {nfe} NFE ({listing}); pass the sampler "
            "and/or the study group to choose one"
        )
    return chosen[0]

def best_schedule(
    db: str | Path | Storage | None,
    model: TunableModel | None,
    *,
    nfe: int,                           # denoiser calls per image the schedule was found for
    sampler: str | None = None,
    group: str | None = None,
    allow_other_weights: bool = False,
) -> TuningSchedule:
    """The best schedule stored for ``model`` at ``nfe``, to use with :func:`skip_tuning`.

    Once the study is validated, the best on fresh seeds (``front_report``'s records say
    which: ``validated``), not the search's own minimum, which is biased low.

    ``with skip_tuning(model, best_schedule("skiptune.db", model, nfe=9)): ...``. A
    schedule searched on other weights (another fingerprint) is refused unless
    ``allow_other_weights`` is True; ``model=None`` skips the check.
    """
    with reading_storage(db) as storage:
        record = one_record(
            storage.front_records(kind="tuned"), nfe=nfe, sampler=sampler, group=group,
            db=storage.display_url,
        )
    if model is not None:
        check_weights(
            record.model_fingerprint, model, allow_other_weights, where=record.study_name
        )
    return TuningSchedule.from_dict(record.schedule)
