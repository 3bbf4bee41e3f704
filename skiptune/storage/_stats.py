"""Reference statistics (μ, Σ of reference features) cached in the study database."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy

from skiptune._failpoints import failpoint
from skiptune.errors import StorageError
from skiptune.storage._models import ReferenceStatisticsRow, utcnow

if TYPE_CHECKING:
    from skiptune.storage._storage import Storage

__all__ = ["DatabaseStatisticsCache", "array_from_bytes", "array_to_bytes"]


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

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        with self._storage.session() as session:
            row = session.get(ReferenceStatisticsRow, key)
            if row is None:
                return None
            return array_from_bytes(row.mu), array_from_bytes(row.sigma)

    def meta(self, key: str) -> dict[str, Any] | None:
        """The metadata stored with ``key``, or None."""
        with self._storage.session() as session:
            row = session.get(ReferenceStatisticsRow, key)
            return None if row is None else json.loads(row.meta)

    def put(self, key: str, mu: np.ndarray, sigma: np.ndarray, *, meta: dict) -> None:
        if len(key) > 255:
            raise StorageError(f"a statistics key must be at most 255 characters, got {len(key)}")
        values = {
            "mu": array_to_bytes(np.asarray(mu)),
            "sigma": array_to_bytes(np.asarray(sigma)),
            "meta": json.dumps(meta, sort_keys=True, default=str),
            "created": utcnow(),
        }
        try:
            with self._storage.session() as session:
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
        with self._storage.session() as session:
            return list(session.scalars(sqlalchemy.select(ReferenceStatisticsRow.key)))
