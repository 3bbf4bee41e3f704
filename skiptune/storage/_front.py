"""The stored Pareto front in ``skiptune_front_points``: each study's tuned and baseline point,
replaced and re-flagged against its group in one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import select

from skiptune._failpoints import failpoint
from skiptune.errors import StorageError
from skiptune.storage._models import (
    FrontPointRow,
    FrontValidationRow,
    SessionFactory,
    utcnow,
)

__all__ = ["FrontRecord", "front_records", "update_front"]


@dataclass(frozen=True)
class FrontRecord:
    """A measured point of a study: its best tuned schedule or its baseline (ρ = 1).

    ``value`` is the proxy value (lower is better) at ``num_samples`` images from noise seed
    ``seed``; ``comparison_key`` is equal only for points measured the same way (metric,
    features, reference, N, seed), the only ones that may be compared.
    """

    study_group: str
    study_name: str
    kind: str                          # "tuned" or "baseline"
    sampler: str
    nfe: int
    value: float
    metric: str
    num_samples: int
    seed: int
    comparison_key: str
    model_fingerprint: str
    trial_number: int
    schedule: dict[str, Any]
    baseline_value: float | None = None
    on_front: bool = False
    # How ``value`` was validated on fresh seeds (num_samples, seed, search_value, gain,
    # gain_low, gain_high, level); None: ``value`` is the search's own measurement.
    validation: dict[str, Any] | None = None

    @property
    def validated(self) -> bool:
        return self.validation is not None

    @property
    def measured_num_samples(self) -> int:
        """N behind ``value``: the validation's once validated, else the search's."""
        return int(self.validation["num_samples"]) if self.validation else self.num_samples

    @property
    def measured_seed(self) -> int:
        """The noise seed of the first image behind ``value`` (image j: seed + j)."""
        return int(self.validation["seed"]) if self.validation else self.seed


def front_records(
    session: SessionFactory, *, group: str | None = None, kind: str | None = None
) -> list[FrontRecord]:
    """Stored front points (every study's tuned and baseline point), by group, NFE, kind."""
    query = select(FrontPointRow).order_by(
        FrontPointRow.study_group, FrontPointRow.nfe, FrontPointRow.kind, FrontPointRow.id
    )
    if group is not None:
        query = query.where(FrontPointRow.study_group == group)
    if kind is not None:
        query = query.where(FrontPointRow.kind == kind)
    with session() as transaction:
        validations = _validations(transaction)
        return [_record_from_row(row, validations) for row in transaction.scalars(query)]

def update_front(
    session: SessionFactory,
    *,
    group: str,
    study_name: str,
    points: Sequence[FrontRecord],
    on_front: Callable[[Sequence[FrontRecord]], Sequence[bool]],
) -> list[FrontRecord]:
    """Replace ``study_name``'s points by ``points`` and re-flag the group's front, atomically.

    ``on_front`` receives every point of the group after the replacement and returns, for
    each, whether it is on the front. One transaction: a reader sees the old front or the
    new one, never a mix. Callers serialise concurrent updates of a group with
    the storage's ``lock``. Returns the group's points as stored.
    """
    with session() as transaction:
        transaction.execute(
            sqlalchemy.delete(FrontPointRow).where(FrontPointRow.study_name == study_name)
        )
        transaction.execute(
            sqlalchemy.delete(FrontValidationRow)
            .where(FrontValidationRow.study_name == study_name)
        )
        for point in points:
            transaction.add(_row_from_record(point))
            if point.validation is not None:
                transaction.add(FrontValidationRow(
                    study_name=point.study_name, kind=point.kind,
                    validation=json.dumps(point.validation, sort_keys=True),
                ))
        transaction.flush()
        failpoint("front-write")       # old points deleted, new ones written, no commit
        rows = list(
            transaction.scalars(
                select(FrontPointRow)
                .where(FrontPointRow.study_group == group)
                .order_by(FrontPointRow.id)
            )
        )
        validations = _validations(transaction)
        flags = list(on_front([_record_from_row(row, validations) for row in rows]))
        if len(flags) != len(rows):
            raise StorageError(f"on_front returned {len(flags)} flags for {len(rows)} points")
        for row, flag in zip(rows, flags, strict=True):
            row.on_front = bool(flag)
        return [_record_from_row(row, validations) for row in rows]


_Validations = dict[tuple[str, str], dict[str, Any]]


def _validations(transaction: Any) -> _Validations:
    """Each point's validation by (study, kind); none in a database that predates the table
    (read-only readers do not create it)."""
    connection = transaction.connection()
    if not sqlalchemy.inspect(connection).has_table(FrontValidationRow.__tablename__):
        return {}
    return {
        (row.study_name, row.kind): json.loads(row.validation)
        for row in transaction.scalars(select(FrontValidationRow))
    }


def _record_from_row(row: FrontPointRow, validations: _Validations) -> FrontRecord:
    return FrontRecord(
        study_group=row.study_group,
        study_name=row.study_name,
        kind=row.kind,
        sampler=row.sampler,
        nfe=row.nfe,
        value=row.value,
        metric=row.metric,
        num_samples=row.num_samples,
        seed=row.seed,
        comparison_key=row.comparison_key,
        model_fingerprint=row.model_fingerprint,
        trial_number=row.trial_number,
        schedule=json.loads(row.schedule),
        baseline_value=row.baseline_value,
        on_front=bool(row.on_front),
        validation=validations.get((row.study_name, row.kind)),
    )

def _row_from_record(record: FrontRecord) -> FrontPointRow:
    return FrontPointRow(
        study_group=record.study_group,
        study_name=record.study_name,
        kind=record.kind,
        sampler=record.sampler,
        nfe=record.nfe,
        value=record.value,
        baseline_value=record.baseline_value,
        metric=record.metric,
        num_samples=record.num_samples,
        seed=record.seed,
        comparison_key=record.comparison_key,
        model_fingerprint=record.model_fingerprint,
        trial_number=record.trial_number,
        schedule=json.dumps(record.schedule, sort_keys=True),
        on_front=record.on_front,
        updated=utcnow(),
    )
