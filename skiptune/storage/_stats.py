"""Reference statistics (μ, Σ of reference features) cached in the study database."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlalchemy

from skiptune._failpoints import failpoint
from skiptune.errors import StorageError
from skiptune.storage._models import ReferenceStatisticsRow, SessionFactory, utcnow

__all__ = [
    "DatabaseStatisticsCache",
    "PendingStatisticsCache",
    "array_from_bytes",
    "array_to_bytes",
]


def array_to_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes of ``array`` (dtype and shape included, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    """The array that :func:`array_to_bytes` wrote; refuses pickled objects."""
    return np.load(io.BytesIO(data), allow_pickle=False)


class DatabaseStatisticsCache:
    """The objective's ``StatisticsCache`` protocol, kept in ``skiptune_reference_statistics``.

    ``get(key)`` returns (μ, Σ) or None; ``put(key, mu, sigma, meta=...)`` stores them,
    replacing an entry with the same key. Several workers may compute the same statistics at
    once; the last write wins, and every write holds the same numbers.
    """

    def __init__(self, session: SessionFactory) -> None:
        self._session = session

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        with self._session() as session:
            row = session.get(ReferenceStatisticsRow, key)
            if row is None:
                return None
            return array_from_bytes(row.mu), array_from_bytes(row.sigma)

    def meta(self, key: str) -> dict[str, Any] | None:
        """The metadata stored with ``key``, or None."""
        with self._session() as session:
            row = session.get(ReferenceStatisticsRow, key)
            return None if row is None else json.loads(row.meta)

    def put(self, key: str, mu: np.ndarray, sigma: np.ndarray, *, meta: Mapping[str, Any]) -> None:
        if len(key) > 255:
            raise StorageError(f"a statistics key must be at most 255 characters, got {len(key)}")
        values = {
            "mu": array_to_bytes(np.asarray(mu)),
            "sigma": array_to_bytes(np.asarray(sigma)),
            "meta": json.dumps(meta, sort_keys=True, default=str),
            "created": utcnow(),
        }
        try:
            with self._session() as session:
                row = session.get(ReferenceStatisticsRow, key)
                if row is None:
                    session.add(ReferenceStatisticsRow(key=key, **values))
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
                session.flush()
                failpoint("stats-put")     # the row is written, not yet committed
        except sqlalchemy.exc.IntegrityError:
            # Another worker inserted the same key first; its statistics are the same numbers.
            return

    def keys(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(sqlalchemy.select(ReferenceStatisticsRow.key)))


class PendingStatisticsCache:
    """A statistics cache for planning a search before its database may be written.

    Reads come from ``source`` (the database's cache, opened read-only, or None for a
    database that does not exist yet); statistics computed meanwhile are held in memory.
    :meth:`flush_into` writes them to the database once every input has been checked, and
    from then on every call goes to that database: a search that fails on its inputs has
    created, migrated and written nothing.
    """

    def __init__(self, source: Any | None) -> None:
        self._source = source
        self._pending: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}
        self._target: Any | None = None

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self._target is not None:
            return self._target.get(key)
        if key in self._pending:
            mu, sigma, _meta = self._pending[key]
            return mu, sigma
        return None if self._source is None else self._source.get(key)

    def put(self, key: str, mu: np.ndarray, sigma: np.ndarray, *, meta: Any) -> None:
        if self._target is not None:
            self._target.put(key, mu, sigma, meta=meta)
        else:
            self._pending[key] = (np.asarray(mu), np.asarray(sigma), dict(meta))

    def flush_into(self, target: Any) -> None:
        """Store what was computed in ``target`` and use ``target`` from now on."""
        for key, (mu, sigma, meta) in self._pending.items():
            target.put(key, mu, sigma, meta=meta)
        self._pending.clear()
        self._source = None
        self._target = target
