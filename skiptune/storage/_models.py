"""skiptune's tables, kept in the same database as Optuna's and prefixed ``skiptune_``.

Every change to these tables raises ``SCHEMA_VERSION`` and adds a step to
``_schema.MIGRATIONS``, so that a database written by this version stays readable by later
ones, and a database written by a later one is refused instead of misread.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

__all__ = [
    "SCHEMA_VERSION",
    "Base",
    "FrontPointRow",
    "LockRow",
    "ReferenceStatisticsRow",
    "RunRow",
    "SchemaVersionRow",
    "SessionFactory",
    "utcnow",
]

SCHEMA_VERSION = 1

SessionFactory = Callable[[], contextlib.AbstractContextManager[Session]]
"""``Storage.session``: one transaction per call, committed when its block ends. The record
modules (runs, front, statistics) are handed this, not the storage."""


def utcnow() -> datetime.datetime:
    """Now, in UTC, without tzinfo (SQLite keeps no zone; every stored time is UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaVersionRow(Base):
    """One row: the schema version of skiptune's tables and the skiptune that last wrote it."""

    __tablename__ = "skiptune_schema_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    skiptune_version: Mapped[str] = mapped_column(String(64))
    updated: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class RunRow(Base):
    """One ``skiptune search`` invocation on one study: what was searched, with what."""

    __tablename__ = "skiptune_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_name: Mapped[str] = mapped_column(String(255), index=True)
    study_group: Mapped[str] = mapped_column(String(255), index=True)
    model_fingerprint: Mapped[str] = mapped_column(String(64))
    model_path: Mapped[str] = mapped_column(Text)
    sampler: Mapped[str] = mapped_column(String(64))
    nfe: Mapped[int] = mapped_column(Integer)
    objective_identity: Mapped[str] = mapped_column(Text)     # JSON
    config: Mapped[str] = mapped_column(Text)                 # JSON of the StudyConfig
    skiptune_version: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class FrontPointRow(Base):
    """A study's measured point, tuned (its best complete trial) or baseline (ρ = 1).

    ``on_front`` says whether the point is on its group's Pareto front of NFE against proxy
    value, among points of the same kind and the same ``comparison_key`` (metric, features,
    reference, N and seed): only those are comparable.
    """

    __tablename__ = "skiptune_front_points"
    __table_args__ = (UniqueConstraint("study_name", "kind", name="uq_skiptune_front_study_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_group: Mapped[str] = mapped_column(String(255), index=True)
    study_name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))              # "tuned" or "baseline"
    sampler: Mapped[str] = mapped_column(String(64))
    nfe: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)                # proxy value, lower is better
    baseline_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    metric: Mapped[str] = mapped_column(String(64))
    num_samples: Mapped[int] = mapped_column(Integer)          # N of the final rung
    seed: Mapped[int] = mapped_column(Integer)                 # noise seed of sample 0
    comparison_key: Mapped[str] = mapped_column(String(64))
    model_fingerprint: Mapped[str] = mapped_column(String(64))
    trial_number: Mapped[int] = mapped_column(Integer)
    schedule: Mapped[str] = mapped_column(Text)                # JSON of the TuningSchedule
    on_front: Mapped[bool] = mapped_column(Boolean, default=False)
    updated: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class FrontValidationRow(Base):
    """How a front point's value was validated on fresh seeds (JSON), beside the point.

    A table of its own, not a column of ``skiptune_front_points``: a database written before
    validation existed gains it at its next search (``create_all``) with nothing else
    changed, reads back without it (no validation), and stays readable by older skiptune,
    which ignores the table, so the schema version is unchanged.
    """

    __tablename__ = "skiptune_front_validations"
    __table_args__ = (
        UniqueConstraint("study_name", "kind", name="uq_skiptune_front_validation"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_name: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))              # "tuned" or "baseline"
    validation: Mapped[str] = mapped_column(Text)


class ReferenceStatisticsRow(Base):
    """Cached Gaussian statistics (μ, Σ) of reference features, stored as ``.npy`` bytes."""

    __tablename__ = "skiptune_reference_statistics"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    mu: Mapped[bytes] = mapped_column(LargeBinary)
    sigma: Mapped[bytes] = mapped_column(LargeBinary)
    meta: Mapped[str] = mapped_column(Text)                    # JSON
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class LockRow(Base):
    """A named row that workers lock (``SELECT … FOR UPDATE``) to serialise a critical step."""

    __tablename__ = "skiptune_locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
