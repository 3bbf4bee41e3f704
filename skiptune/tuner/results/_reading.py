"""Read results back from a database: study summaries, the stored fronts, the best schedule.

Every reader opens the database read-only: reading never creates, migrates or changes it.
"""

from __future__ import annotations

import dataclasses
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
from skiptune.tuner.results._labels import gain_established, interval_text, measured_on, percent
from skiptune.tuner.results._pareto import (
    SpeedClaim,
    describe_claim,
    front_flags,
    speed_claims,
)
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
    "select_records",
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
    """The stored points of one comparison key, each sampler's front, and what they say.

    ``num_samples`` and ``seed`` are the search's settings; ``measured_num_samples`` and
    ``measured_seed`` are those of the values shown (the validation's once validated).
    """

    comparison_key: str
    metric: str
    num_samples: int
    seed: int
    tuned: list[FrontRecord]           # every tuned point, by NFE (``on_front`` flags the front)
    baseline: list[FrontRecord]
    claims: list[SpeedClaim]           # per sampler, each naming it

    @property
    def samplers(self) -> list[str]:
        return sorted({r.sampler for r in (*self.tuned, *self.baseline)})

    @property
    def _first(self) -> FrontRecord:
        return (self.tuned or self.baseline)[0]

    @property
    def validated(self) -> bool:
        return self._first.validated

    @property
    def measured_num_samples(self) -> int:
        return self._first.measured_num_samples

    @property
    def measured_seed(self) -> int:
        return self._first.measured_seed

    @property
    def measured_on(self) -> str:
        """``N = 128, seeds 64–191, validated``: what every value shown was measured on."""
        return measured_on(self.measured_num_samples, self.measured_seed,
                           validated=self.validated)

    @property
    def sentences(self) -> list[str]:
        """What the front says, one line per sampler, each naming it."""
        return [self._sentence(sampler) for sampler in self.samplers]

    @property
    def sentence(self) -> str:
        return "\n".join(self.sentences) or "no tuned and baseline points measured alike yet"

    def _sentence(self, sampler: str) -> str:
        claims = [c for c in self.claims if c.sampler == sampler]
        if claims:
            return describe_claim(claims[0])
        same = [
            (t, b) for t in self.tuned for b in self.baseline
            if t.study_name == b.study_name and t.sampler == sampler and b.value > 0
        ]
        if not same:
            return f"{sampler}: no tuned and baseline points measured alike yet"
        t, b = min(same, key=lambda tb: tb[0].value / tb[1].value)
        return (
            f"{sampler}: tuned improves {t.metric} by {percent(1 - t.value / b.value)} at "
            f"{t.nfe} NFE{_established_note(t)}; no baseline measured at a higher NFE is "
            f"matched yet (search more budgets, e.g. --nfe {2 * t.nfe + 1}, to compare speed)"
        )


def _established_note(record: FrontRecord) -> str:
    """`` (not established: the interval [-1%, 2%] includes 0)`` for a validated gain whose
    interval includes zero, else nothing."""
    about = record.validation or {}
    low, high = about.get("gain_low"), about.get("gain_high")
    if low is None or high is None or gain_established(low, high):
        return ""
    return f" (not established: the interval {interval_text(low, high)} includes 0)"


def _by_nfe(record: FrontRecord) -> tuple[int, float]:
    return (record.nfe, record.value)


def _claims_per_sampler(tuned: Sequence[FrontRecord], baseline: Sequence[FrontRecord]
                        ) -> list[SpeedClaim]:
    """Each sampler's speed claims (its tuned points against its own ρ = 1), naming it."""
    claims = []
    for sampler in sorted({r.sampler for r in tuned}):
        claims += [dataclasses.replace(c, sampler=sampler) for c in speed_claims(
            [t for t in tuned if t.sampler == sampler],
            [b for b in baseline if b.sampler == sampler])]
    return sorted(claims, key=lambda c: (-c.saving, c.tuned_nfe, c.sampler or ""))


def front_report(
    db: str | Path | Storage | None = None, *, group: str | None = None
) -> list[FrontReport]:
    """The stored points, one report per set of alike measurements (metric, N, seeds...).

    The ``on_front`` flags are those of :func:`front_flags` (each sampler its own front),
    recomputed here, so a database written by an older skiptune reads the same way.
    """
    with reading_storage(db) as storage:
        records = storage.front_records(group=group)
    records = [dataclasses.replace(r, on_front=flag)
               for r, flag in zip(records, front_flags(records), strict=True)]
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
                claims=_claims_per_sampler(tuned, baseline),
            )
        )
    return reports

def select_records(
    records: Sequence[FrontRecord], *, nfe: int, sampler: str | None, group: str | None
) -> list[FrontRecord]:
    """The tuned records at ``nfe`` (of ``sampler`` and ``group`` where given)."""
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
    chosen = select_records(records, nfe=nfe, sampler=sampler, group=group)
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
