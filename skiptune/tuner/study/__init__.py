"""What a study is: its typed configuration, its identity, and the record it keeps in Optuna.

Read by the search (``skiptune.tuner.search``), which writes studies, and by the result
readers (``skiptune.tuner.results``) alike; it imports neither. ``StudyConfig`` is the one
resolved configuration stored with a study and compared on resume; ``study_name`` and
``comparison_key`` say which studies and measurements are the same; the record names every
attribute skiptune stores and reads schedules and validations back from it.
"""

from __future__ import annotations

from skiptune.tuner.study._config import (
    OPTIMIZERS,
    SearchConfig,
    SearchSpace,
    StudyConfig,
    ValidationSettings,
)
from skiptune.tuner.study._identity import (
    comparison_key,
    config_differences,
    default_group,
    describe_differences,
    study_name,
)
from skiptune.tuner.study._record import (
    CONFIG_ATTR,
    FAILURE_ATTR,
    FAILURE_KIND_ATTR,
    GRID_ATTR,
    GRID_PREFIX,
    NUM_SAMPLES_ATTR,
    NUM_SKIPS_ATTR,
    RACE_ATTR,
    ROLE_ATTR,
    RUNG_VALUES_ATTR,
    SECONDS_ATTRS,
    SEEDED_ATTR,
    SKIP_LAYOUT_ATTR,
    TOTAL_ATTR,
    VALIDATION_ATTR,
    WARM_ATTR,
    ValidatedCandidate,
    ValidationResult,
    candidate_attr,
    canonical_schedule,
    grid_artifacts,
    is_finished,
    role_of,
    schedule_from_params,
    validation_result,
    value_of,
)

__all__ = [
    "CONFIG_ATTR",
    "FAILURE_ATTR",
    "FAILURE_KIND_ATTR",
    "GRID_ATTR",
    "GRID_PREFIX",
    "NUM_SAMPLES_ATTR",
    "NUM_SKIPS_ATTR",
    "OPTIMIZERS",
    "RACE_ATTR",
    "ROLE_ATTR",
    "RUNG_VALUES_ATTR",
    "SECONDS_ATTRS",
    "SEEDED_ATTR",
    "SKIP_LAYOUT_ATTR",
    "TOTAL_ATTR",
    "VALIDATION_ATTR",
    "WARM_ATTR",
    "SearchConfig",
    "SearchSpace",
    "StudyConfig",
    "ValidatedCandidate",
    "ValidationResult",
    "ValidationSettings",
    "candidate_attr",
    "canonical_schedule",
    "comparison_key",
    "config_differences",
    "default_group",
    "describe_differences",
    "grid_artifacts",
    "is_finished",
    "role_of",
    "schedule_from_params",
    "study_name",
    "validation_result",
    "value_of",
]
