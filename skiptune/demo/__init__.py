"""Training of the demonstration models on MNIST: the U-Net and the digit feature network.

The feature network itself belongs to the metric (``skiptune.objectives``); it is re-exported
here for the training scripts' users.
"""

from __future__ import annotations

from skiptune.objectives import (
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
