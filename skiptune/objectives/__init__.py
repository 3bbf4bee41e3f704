"""Proxy FID/KID objectives: feature extractors, reference statistics and rungs of N.

A trial's score is the Fréchet distance (or KID) between features of images sampled with
fixed seeds under a skip schedule and the features of real reference images::

    config = ObjectiveConfig(sampler="heun", nfe=9, rungs=(64, 256))
    objective = build_objective(model, config)
    objective.evaluate(TuningSchedule(rho_bottom=0.6)).value
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiptune._lazy import lazy_exports

# Each name is imported from its module on first use (PEP 562): a study's stored config
# (ObjectiveConfig) is read without importing the torch-backed feature networks and samplers.
_EXPORTS = {
    "skiptune.objectives._cache": ("DirectoryStatisticsCache", "StatisticsCache"),
    "skiptune.objectives._config": ("ObjectiveConfig", "ObjectiveSettings"),
    "skiptune.objectives._digit_net": (
        "DEFAULT_FEATURE_NET_PATH", "DigitFeatureNet", "FeatureNetConfig", "save_feature_net",
    ),
    "skiptune.objectives._features": ("FeatureExtractor", "load_feature_extractor"),
    "skiptune.objectives._maths": (
        "bootstrap_indices", "bootstrap_values", "frechet_distance_to_features",
        "gaussian_statistics", "paired_gain_interval",
    ),
    "skiptune.objectives._metrics": ("get_metric", "Metric", "METRICS"),
    "skiptune.objectives._objective": (
        "BatchReduced", "build_objective", "CandidateReport", "Evaluation", "ProxyObjective",
        "RungReport",
    ),
    "skiptune.objectives._reference": ("load_reference", "ReferenceStatistics"),
    "skiptune.objectives._self_reference": (
        "check_disjoint_seeds", "is_self_reference", "parse_self_reference", "ReferenceProgress",
    ),
}

if TYPE_CHECKING:
    from skiptune.objectives._cache import DirectoryStatisticsCache, StatisticsCache
    from skiptune.objectives._config import ObjectiveConfig, ObjectiveSettings
    from skiptune.objectives._digit_net import (
        DEFAULT_FEATURE_NET_PATH,
        DigitFeatureNet,
        FeatureNetConfig,
        save_feature_net,
    )
    from skiptune.objectives._features import FeatureExtractor, load_feature_extractor
    from skiptune.objectives._maths import (
        bootstrap_indices,
        bootstrap_values,
        frechet_distance_to_features,
        gaussian_statistics,
        paired_gain_interval,
    )
    from skiptune.objectives._metrics import METRICS, Metric, get_metric
    from skiptune.objectives._objective import (
        BatchReduced,
        CandidateReport,
        Evaluation,
        ProxyObjective,
        RungReport,
        build_objective,
    )
    from skiptune.objectives._reference import ReferenceStatistics, load_reference
    from skiptune.objectives._self_reference import (
        ReferenceProgress,
        check_disjoint_seeds,
        is_self_reference,
        parse_self_reference,
    )

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The contract: what users (README, docs, --help), skiptune's other packages and the
# benchmarks use, and the types those take and return. The rest is imported from the module
# that defines it.
__all__ = [
    "DEFAULT_FEATURE_NET_PATH",
    "METRICS",
    "BatchReduced",
    "CandidateReport",
    "DigitFeatureNet",
    "DirectoryStatisticsCache",
    "Evaluation",
    "FeatureExtractor",
    "FeatureNetConfig",
    "Metric",
    "ObjectiveConfig",
    "ObjectiveSettings",
    "ProxyObjective",
    "ReferenceProgress",
    "ReferenceStatistics",
    "RungReport",
    "StatisticsCache",
    "bootstrap_indices",
    "bootstrap_values",
    "build_objective",
    "check_disjoint_seeds",
    "frechet_distance_to_features",
    "gaussian_statistics",
    "get_metric",
    "is_self_reference",
    "load_feature_extractor",
    "load_reference",
    "paired_gain_interval",
    "parse_self_reference",
    "save_feature_net",
]
