"""Proxy FID/KID objectives: feature extractors, reference statistics and rungs of N.

A trial's score is the Fréchet distance (or KID) between features of images sampled with
fixed seeds under a skip schedule and the features of real reference images::

    config = ObjectiveConfig(sampler="heun", nfe=9, rungs=(64, 256))
    objective = build_objective(model, config)
    objective.evaluate(RhoSchedule(rho_bottom=0.6)).value
"""

from __future__ import annotations

from skiptune.objectives._cache import (
    DirectoryStatisticsCache,
    StatisticsCache,
    statistics_key,
)
from skiptune.objectives._digit_net import (
    DEFAULT_FEATURE_NET_PATH,
    FEATURE_NET_KIND,
    DigitFeatureNet,
    FeatureNetConfig,
    feature_net_fingerprint,
    load_feature_net,
    save_feature_net,
)
from skiptune.objectives._features import (
    EXTRACTOR_NAMES,
    INCEPTION_FILENAME,
    INCEPTION_URL,
    INCEPTION_WEIGHTS_ENV,
    DigitFeatureExtractor,
    FeatureExtractor,
    InceptionFeatureExtractor,
    InputSpec,
    TorchScriptFeatureExtractor,
    find_inception_weights,
    load_feature_extractor,
    quantize_images,
)
from skiptune.objectives._maths import (
    bootstrap_indices,
    bootstrap_values,
    frechet_distance,
    frechet_distance_to_features,
    gaussian_statistics,
    kernel_inception_distance,
    paired_bootstrap_gain,
    paired_gain_interval,
)
from skiptune.objectives._metrics import METRICS, Metric, MetricScore, get_metric
from skiptune.objectives._objective import (
    BatchReduced,
    CandidateReport,
    Evaluation,
    ObjectiveConfig,
    ObjectiveSettings,
    ProxyObjective,
    RungReport,
    build_objective,
    evaluate,
)
from skiptune.objectives._reference import ReferenceStatistics, load_reference
from skiptune.objectives._self_reference import (
    SELF_REFERENCE_SEED,
    ReferenceProgress,
    SelfReference,
    SelfReferenceSpec,
    check_disjoint_seeds,
    is_self_reference,
    parse_self_reference,
)

__all__ = [
    "DEFAULT_FEATURE_NET_PATH",
    "EXTRACTOR_NAMES",
    "FEATURE_NET_KIND",
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_ENV",
    "METRICS",
    "SELF_REFERENCE_SEED",
    "BatchReduced",
    "CandidateReport",
    "DigitFeatureExtractor",
    "DigitFeatureNet",
    "DirectoryStatisticsCache",
    "Evaluation",
    "FeatureExtractor",
    "FeatureNetConfig",
    "InceptionFeatureExtractor",
    "InputSpec",
    "Metric",
    "MetricScore",
    "ObjectiveConfig",
    "ObjectiveSettings",
    "ProxyObjective",
    "ReferenceProgress",
    "ReferenceStatistics",
    "RungReport",
    "SelfReference",
    "SelfReferenceSpec",
    "StatisticsCache",
    "TorchScriptFeatureExtractor",
    "bootstrap_indices",
    "bootstrap_values",
    "build_objective",
    "check_disjoint_seeds",
    "evaluate",
    "feature_net_fingerprint",
    "find_inception_weights",
    "frechet_distance",
    "frechet_distance_to_features",
    "gaussian_statistics",
    "get_metric",
    "is_self_reference",
    "kernel_inception_distance",
    "load_feature_extractor",
    "load_feature_net",
    "load_reference",
    "paired_bootstrap_gain",
    "paired_gain_interval",
    "parse_self_reference",
    "quantize_images",
    "save_feature_net",
    "statistics_key",
]
