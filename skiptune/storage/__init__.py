"""The study database: skiptune's tables beside Optuna's, in SQLite or a database server.

``open_storage(url)`` opens it (a plain path means SQLite; default ``./skiptune.db``);
the returned :class:`Storage` gives Optuna's ``RDBStorage`` on the same database, the
reference-statistics cache, the runs and the stored Pareto front.
"""

from __future__ import annotations

from skiptune._version import skiptune_version
from skiptune.errors import NoSkiptuneDatabaseError
from skiptune.storage._artifacts import artifact_folder
from skiptune.storage._front import FrontRecord
from skiptune.storage._models import SCHEMA_VERSION
from skiptune.storage._runs import RunRecord
from skiptune.storage._stats import DatabaseStatisticsCache, PendingStatisticsCache
from skiptune.storage._storage import Storage, open_storage
from skiptune.storage._url import DEFAULT_DB, mask_url, normalise_url

__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "DatabaseStatisticsCache",
    "FrontRecord",
    "NoSkiptuneDatabaseError",
    "PendingStatisticsCache",
    "RunRecord",
    "Storage",
    "artifact_folder",
    "mask_url",
    "normalise_url",
    "open_storage",
    "skiptune_version",
]
