"""Read results: study summaries, the stored front, the best schedule, export and import."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from skiptune.errors import ConfigurationError, StorageError
from skiptune.models import TunableModel
from skiptune.schedule import RhoSchedule
from skiptune.storage import FrontRecord, Storage, open_storage, skiptune_version
from skiptune.tuner._config import SearchConfig, comparison_key
from skiptune.tuner._pareto import SpeedClaim, pareto_mask, speed_claims
from skiptune.tuner._space import ROLE_ATTR, schedule_from_params

__all__ = [
    "CONFIG_ATTR",
    "EXPORT_FORMAT",
    "TOTAL_ATTR",
    "ExportedSchedule",
    "FrontReport",
    "StudySummary",
    "best_schedule",
    "export_schedule",
    "front_report",
    "is_finished",
    "list_studies",
    "load_exported",
    "summarize",
    "update_front",
]

CONFIG_ATTR = "skiptune_config"        # study user attribute: SearchConfig.to_dict()
TOTAL_ATTR = "skiptune_trials_total"   # study user attribute: the latest requested total
SEEDED_ATTR = "skiptune_seeded"        # study user attribute: baselines were queued
FAILURE_KIND_ATTR = "failure_kind"     # trial user attribute: "non-finite", "interrupted", "error"
EXPORT_FORMAT = "skiptune-schedule"
EXPORT_FORMAT_VERSION = 1


def is_finished(trial: FrozenTrial) -> bool:
    """Counts toward the study's total: complete, pruned, or failed with non-finite samples.

    A non-finite failure is a measurement (this ρ makes the network diverge); a trial that
    failed because its process died or was interrupted is not, and is run again.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    kind = trial.user_attrs.get(FAILURE_KIND_ATTR)
    return trial.state == TrialState.FAIL and kind == "non-finite"


def _role(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(ROLE_ATTR, "search"))


def _schedule_of(trial: FrozenTrial) -> RhoSchedule:
    return schedule_from_params(trial.params)


@dataclass(frozen=True)
class StudySummary:
    """Where one study stands and what it found.

    ``best_value`` and ``baseline_value`` are proxy values (lower is better) at
    ``num_samples`` images from noise seed ``seed``; ``None`` until measured.
    """

    study_name: str
    group: str
    sampler: str
    nfe: int
    metric: str
    num_samples: int
    seed: int
    model_fingerprint: str
    model: str
    optimizer: str
    trials_total: int
    finished: int
    complete: int
    pruned: int
    failed: int                 # non-finite failures (counted as finished)
    running: int
    best_value: float | None
    best_schedule: RhoSchedule | None
    best_trial: int | None
    baseline_value: float | None
    seconds_per_trial: float | None   # mean evaluation time of complete trials
    # The best value of each kind of known point measured beside the baseline: "paper" (the
    # paper's ρ schedules), "freeu" (the model family's recommended FreeU values).
    known_values: dict[str, float] = field(default_factory=dict)

    @property
    def improvement(self) -> float | None:
        """Relative improvement over the baseline: 1 − best / baseline (0.4 = 40% lower)."""
        if self.best_value is None or not self.baseline_value:
            return None
        return 1.0 - self.best_value / self.baseline_value

    @property
    def done(self) -> bool:
        return self.finished >= self.trials_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study_name,
            "group": self.group,
            "sampler": self.sampler,
            "nfe": self.nfe,
            "metric": self.metric,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "model_fingerprint": self.model_fingerprint,
            "model": self.model,
            "optimizer": self.optimizer,
            "trials_total": self.trials_total,
            "finished": self.finished,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "running": self.running,
            "best_value": self.best_value,
            "best_schedule": None if self.best_schedule is None else self.best_schedule.to_dict(),
            "best_trial": self.best_trial,
            "baseline_value": self.baseline_value,
            "improvement": self.improvement,
            "seconds_per_trial": self.seconds_per_trial,
            "known_values": dict(self.known_values),
        }


def _best_and_baseline(
    trials: Sequence[FrozenTrial],
) -> tuple[FrozenTrial | None, FrozenTrial | None]:
    complete = [
        t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
        and math.isfinite(t.value)
    ]
    best = min(complete, key=lambda t: (t.value, t.number), default=None)
    baselines = [t for t in complete if _role(t) == "baseline"]
    baseline = min(baselines, key=lambda t: t.number, default=None)
    return best, baseline


def summarize(study: optuna.Study, config: SearchConfig) -> StudySummary:
    """Summarise ``study`` (searched with ``config``) from its trials."""
    trials = study.get_trials(deepcopy=False)
    best, baseline = _best_and_baseline(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    seconds = [
        float(t.user_attrs["seconds_total"]) for t in complete if "seconds_total" in t.user_attrs
    ]
    return StudySummary(
        study_name=study.study_name,
        group=config.group,
        sampler=config.sampler,
        nfe=config.nfe,
        metric=config.metric,
        num_samples=config.num_samples,
        seed=config.seed,
        model_fingerprint=config.model_fingerprint,
        model=config.model,
        optimizer=config.optimizer,
        trials_total=int(study.user_attrs.get(TOTAL_ATTR, config.trials)),
        finished=sum(is_finished(t) for t in trials),
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(is_finished(t) and t.state == TrialState.FAIL for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        best_value=None if best is None else float(best.value),
        best_schedule=None if best is None else _schedule_of(best),
        best_trial=None if best is None else best.number,
        baseline_value=None if baseline is None else float(baseline.value),
        seconds_per_trial=sum(seconds) / len(seconds) if seconds else None,
        known_values=_known_values(complete),
    )


def _known_values(complete: Sequence[FrozenTrial]) -> dict[str, float]:
    """The best finite value of each queued known-point role ("paper", "freeu")."""
    known: dict[str, float] = {}
    for trial in complete:
        role = _role(trial)
        if role in ("paper", "freeu") and trial.value is not None and math.isfinite(trial.value):
            known[role] = min(known.get(role, math.inf), float(trial.value))
    return known


def front_points_of(study: optuna.Study, config: SearchConfig) -> list[FrontRecord]:
    """The study's tuned point (best complete trial) and baseline point, as stored records."""
    best, baseline = _best_and_baseline(study.get_trials(deepcopy=False))
    key = comparison_key(
        config.objective_identity, num_samples=config.num_samples, seed=config.seed
    )
    baseline_value = None if baseline is None else float(baseline.value)
    points = []
    for kind, trial in (("tuned", best), ("baseline", baseline)):
        if trial is None:
            continue
        points.append(
            FrontRecord(
                study_group=config.group,
                study_name=study.study_name,
                kind=kind,
                sampler=config.sampler,
                nfe=config.nfe,
                value=float(trial.value),
                metric=config.metric,
                num_samples=config.num_samples,
                seed=config.seed,
                comparison_key=key,
                model_fingerprint=config.model_fingerprint,
                trial_number=trial.number,
                schedule=_schedule_of(trial).to_dict(),
                baseline_value=baseline_value,
            )
        )
    return points


def front_flags(records: Sequence[FrontRecord]) -> list[bool]:
    """On-front flags, computed per (kind, comparison key): only alike measurements compete."""
    flags = [False] * len(records)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault((record.kind, record.comparison_key), []).append(i)
    for indices in groups.values():
        mask = pareto_mask([records[i] for i in indices])
        for i, keep in zip(indices, mask, strict=True):
            flags[i] = keep
    return flags


def update_front(storage: Storage, study: optuna.Study, config: SearchConfig) -> list[FrontRecord]:
    """Recompute ``study``'s points from its trials and store them with the group's front.

    Under the group's lock, so the trials read are the latest committed and two workers'
    updates cannot interleave; the write itself is one transaction.
    """
    with storage.lock(f"front:{config.group}"):
        points = front_points_of(study, config)
        return storage.update_front(
            group=config.group, study_name=study.study_name, points=points, on_front=front_flags
        )


# -- reading a database --------------------------------------------------------------------


def _storage(db: str | Path | Storage | None) -> Storage:
    """The database to read results from; a SQLite file that is not there is an error."""
    return db if isinstance(db, Storage) else open_storage(db, must_exist=True)


def list_studies(
    db: str | Path | Storage | None = None, *, group: str | None = None
) -> list[StudySummary]:
    """Summaries of every skiptune study in the database (of one group), by group, sampler, NFE."""
    storage = _storage(db)
    optuna_storage = storage.optuna_storage()
    summaries = []
    for frozen in optuna.get_all_study_summaries(optuna_storage, include_best_trial=False):
        data = frozen.user_attrs.get(CONFIG_ATTR)
        if data is None:
            continue                       # a study some other tool put in the same database
        config = SearchConfig.from_dict(data)
        if group is not None and config.group != group:
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=optuna_storage)
        summaries.append(summarize(study, config))
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
        from skiptune.tuner._pareto import describe_claim

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
    storage = _storage(db)
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


def _one_record(
    records: Sequence[FrontRecord], *, nfe: int, sampler: str | None, group: str | None,
    db: str,
) -> FrontRecord:
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
) -> RhoSchedule:
    """The best schedule stored for ``model`` at ``nfe``, to use with :func:`skip_tuning`.

    ``with skip_tuning(model, best_schedule("skiptune.db", model, nfe=9)): ...``. A
    schedule searched on other weights (another fingerprint) is refused unless
    ``allow_other_weights`` is True; ``model=None`` skips the check.
    """
    storage = _storage(db)
    record = _one_record(
        storage.front_records(kind="tuned"), nfe=nfe, sampler=sampler, group=group,
        db=storage.display_url,
    )
    if model is not None:
        _check_weights(
            record.model_fingerprint, model, allow_other_weights, where=record.study_name
        )
    return RhoSchedule.from_dict(record.schedule)


def _check_weights(
    fingerprint: str, model: TunableModel, allow_other_weights: bool, *, where: str
) -> None:
    if fingerprint != model.fingerprint and not allow_other_weights:
        raise ConfigurationError(
            f"{where} was searched on other weights (fingerprint {fingerprint[:12]}…) than "
            f"this model's ({model.fingerprint[:12]}…); search this model, or pass "
            "allow_other_weights=True to use it anyway"
        )


@dataclass(frozen=True)
class ExportedSchedule:
    """A schedule written by ``skiptune export``: what it is and how it was measured."""

    schedule: RhoSchedule
    nfe: int
    sampler: str
    value: float
    baseline_value: float | None
    metric: str
    num_samples: int
    seed: int
    model_fingerprint: str
    study: str
    schedule_exponent: float | None = None
    # ρ of each skip site by name, bottom → top, when the export was written with the model.
    rho_factors: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        freeu = self.schedule.freeu
        return {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "schedule": self.schedule.to_dict(),
            # What a diffusers user needs without skiptune: pipe.enable_freeu(**enable_freeu).
            "enable_freeu": None if freeu is None or freeu.is_neutral else freeu.to_dict(),
            "rho_factors": self.rho_factors,
            "nfe": self.nfe,
            "sampler": self.sampler,
            "schedule_exponent": self.schedule_exponent,
            "value": self.value,
            "baseline_value": self.baseline_value,
            "metric": self.metric,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "model_fingerprint": self.model_fingerprint,
            "study": self.study,
            "skiptune_version": skiptune_version(),
        }


def export_schedule(
    db: str | Path | Storage | None,
    *,
    nfe: int,
    sampler: str | None = None,
    group: str | None = None,
    path: str | Path | None = None,
    model: TunableModel | None = None,
    allow_other_weights: bool = False,
) -> ExportedSchedule:
    """The best stored schedule at ``nfe`` with how it was measured; written as JSON to ``path``.

    The file holds the schedule, ``enable_freeu`` (FreeU's four values as
    ``pipe.enable_freeu`` takes them, when FreeU was searched) and, given the ``model`` the
    study searched, ``rho_factors``: each skip site's ρ by name, bottom → top.
    """
    storage = _storage(db)
    record = _one_record(
        storage.front_records(kind="tuned"), nfe=nfe, sampler=sampler, group=group,
        db=storage.display_url,
    )
    exponent = None
    for run in reversed(storage.runs(study_name=record.study_name)):
        exponent = run.config.get("objective", {}).get("schedule_exponent")
        break
    exported = ExportedSchedule(
        schedule=RhoSchedule.from_dict(record.schedule),
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
    )
    if model is not None:
        _check_weights(exported.model_fingerprint, model, allow_other_weights,
                       where=f"study {record.study_name}")
        factors = exported.schedule.factors(model.num_skips)
        exported = dataclasses.replace(exported, rho_factors={
            site.name: factor for site, factor in zip(model.skip_sites, factors, strict=True)
        })
    if path is not None:
        target = Path(path)
        try:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(json.dumps(exported.to_dict(), indent=2) + "\n")
            os.replace(tmp, target)
        except OSError as e:
            raise StorageError(f"cannot write {str(target)!r}: {e.strerror}") from None
    return exported


def load_exported(
    path: str | Path,
    *,
    model: TunableModel | None = None,
    allow_other_weights: bool = False,
) -> ExportedSchedule:
    """Read a file written by ``skiptune export``; with ``model``, check it was searched on it.

    Raises ConfigurationError for a file that is not an export, or (unless
    ``allow_other_weights``) one searched on other weights.
    """
    target = Path(path)
    try:
        data = json.loads(target.read_text())
    except OSError as e:
        raise ConfigurationError(f"cannot read {str(target)!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"{str(target)!r} is not JSON ({e.msg}); pass a file written by "
                                 "skiptune export") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ConfigurationError(
            f"{str(target)!r} is not a skiptune schedule export; write one with skiptune export"
        )
    if int(data.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
        raise ConfigurationError(
            f"{str(target)!r} has export format {data['format_version']}, newer than this "
            f"skiptune reads ({EXPORT_FORMAT_VERSION}); upgrade skiptune"
        )
    try:
        exported = ExportedSchedule(
            schedule=RhoSchedule.from_dict(data["schedule"]),
            nfe=int(data["nfe"]),
            sampler=str(data["sampler"]),
            value=float(data["value"]),
            baseline_value=(
                None if data.get("baseline_value") is None else float(data["baseline_value"])
            ),
            metric=str(data["metric"]),
            num_samples=int(data["num_samples"]),
            seed=int(data["seed"]),
            model_fingerprint=str(data["model_fingerprint"]),
            study=str(data.get("study", "")),
            schedule_exponent=data.get("schedule_exponent"),
            rho_factors=data.get("rho_factors"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigurationError(
            f"{str(target)!r} lacks or mangles field {e}; export it again"
        ) from None
    if model is not None:
        _check_weights(exported.model_fingerprint, model, allow_other_weights, where=str(target))
    return exported
