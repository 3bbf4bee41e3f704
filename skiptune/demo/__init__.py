"""The demonstration models trained on MNIST: a digit classifier for a domain FID."""

from __future__ import annotations

from skiptune.demo.feature_net import (
    DEFAULT_FEATURE_NET_PATH,
    FEATURE_NET_KIND,
    DigitFeatureNet,
    FeatureNetConfig,
    feature_net_fingerprint,
    load_feature_net,
    save_feature_net,
)

__all__ = [
    "DEFAULT_FEATURE_NET_PATH",
    "FEATURE_NET_KIND",
    "DigitFeatureNet",
    "FeatureNetConfig",
    "feature_net_fingerprint",
    "load_feature_net",
    "save_feature_net",
]
