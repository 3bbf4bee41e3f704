"""One row per search run in ``skiptune_runs``: which model, sampler, budget and configuration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from skiptune._version import skiptune_version
from skiptune.storage._models import RunRow, SessionFactory, utcnow

__all__ = ["RunRecord", "record_run", "runs"]


@dataclass(frozen=True)
class RunRecord:
    """One search invocation as stored in ``skiptune_runs``."""

    study_name: str
    study_group: str
    model_fingerprint: str
    model_path: str
    sampler: str
    nfe: int
    objective_identity: dict[str, Any]
    config: dict[str, Any]
    skiptune_version: str
    created: Any


def record_run(
    session: SessionFactory,
    *,
    study_name: str,
    study_group: str,
    model_fingerprint: str,
    model_path: str,
    sampler: str,
    nfe: int,
    objective_identity: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """Add a row to ``skiptune_runs`` for one search invocation on one study."""
    with session() as transaction:
        transaction.add(
            RunRow(
                study_name=study_name,
                study_group=study_group,
                model_fingerprint=model_fingerprint,
                model_path=model_path,
                sampler=sampler,
                nfe=nfe,
                objective_identity=json.dumps(objective_identity, sort_keys=True, default=str),
                config=json.dumps(config, sort_keys=True, default=str),
                skiptune_version=skiptune_version(),
                created=utcnow(),
            )
        )

def runs(session: SessionFactory, *, study_name: str | None = None) -> list[RunRecord]:
    """Stored runs, oldest first, of one study or of all."""
    query = select(RunRow).order_by(RunRow.id)
    if study_name is not None:
        query = query.where(RunRow.study_name == study_name)
    with session() as transaction:
        return [
            RunRecord(
                study_name=row.study_name,
                study_group=row.study_group,
                model_fingerprint=row.model_fingerprint,
                model_path=row.model_path,
                sampler=row.sampler,
                nfe=row.nfe,
                objective_identity=json.loads(row.objective_identity),
                config=json.loads(row.config),
                skiptune_version=row.skiptune_version,
                created=row.created,
            )
            for row in transaction.scalars(query)
        ]
