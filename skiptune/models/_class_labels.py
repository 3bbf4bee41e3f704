"""Per-seed class labels: the conditioner of every class-conditional model skiptune loads.

EDM's class-conditional snapshots and diffusers' class-conditional consistency models both
draw sample j's class from its seed, so that every trial of a search sees the same classes
(common random numbers) and a class never depends on the batch a sample is in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError

__all__ = ["ClassLabels"]

_LABEL_STREAM = 0x5EED_C1A55
"""Seeds the class-label stream apart from the noise stream (which is seeded by the seed
alone), so drawing labels leaves every sample's noise unchanged."""


class ClassLabels:
    """One class per sample, drawn from the sample's seed: uniform over ``classes``.

    ``classes`` is every class by default; ``with_options({"class_labels": [...]})`` narrows
    it (one label fixes every sample's class). Returns one-hot labels [len(seeds), label_dim].
    """

    def __init__(self, label_dim: int, classes: Sequence[int] | None = None) -> None:
        self.label_dim = label_dim
        self.classes = None if classes is None else [int(c) for c in classes]

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "class-labels", "label_dim": self.label_dim, "classes": self.classes,
                "stream": _LABEL_STREAM}

    def __call__(self, seeds: Sequence[int]) -> torch.Tensor:
        choices = self.classes if self.classes is not None else range(self.label_dim)
        picks = [
            choices[int(np.random.default_rng([_LABEL_STREAM, int(seed)]).integers(len(choices)))]
            for seed in seeds
        ]
        return torch.eye(self.label_dim)[torch.as_tensor(picks, dtype=torch.long)]

    def with_options(self, options: Mapping[str, Any]) -> ClassLabels:
        unknown = sorted(set(options) - {"class_labels"})
        if unknown:
            raise ConfigurationError(
                f"a class-conditional model takes class_labels, not {', '.join(unknown)}"
            )
        labels = options.get("class_labels")
        if labels is None:
            return self
        labels = list(labels)
        # Plain ints only: numpy integers are refused here, unlike in is_whole.
        bad = [c for c in labels if not (is_whole(c) and isinstance(c, int))
               or not 0 <= c < self.label_dim]
        if not labels or bad:
            raise ConfigurationError(
                f"class labels must be whole numbers in 0..{self.label_dim - 1} for this model's "
                f"{self.label_dim} classes, got {labels}; pass e.g. class_labels 3 or 1,5,7",
                field="class_labels",
            )
        return ClassLabels(self.label_dim, sorted(set(labels)))
