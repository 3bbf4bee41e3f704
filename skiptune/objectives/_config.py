"""What determines a proxy score: the settings a user chooses, and those settings resolved at
one sampler, NFE and seed, as a study stores them. Plain values, checked when built: a study's
stored config is read back (and refused when malformed) without importing torch."""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError
from skiptune.objectives._cleanfid_spec import CLEANFID_PREFIX, parse_cleanfid_spec
from skiptune.objectives._metrics import get_metric
from skiptune.objectives._self_reference import is_self_reference, parse_self_reference
from skiptune.sampling.solvers import get_sampler

__all__ = ["ObjectiveConfig", "ObjectiveSettings"]


@dataclass(frozen=True, kw_only=True)
class ObjectiveSettings:
    """How a proxy score is measured, for any step budget: what a user sets.

    A search resolves these once per budget into an :class:`ObjectiveConfig` (adding the
    sampler, the NFE and the seed, and the model's own feature network where ``features`` is
    None) and stores that with the study.

    Attributes:
        metric: a name in ``skiptune.objectives.METRICS``: ``"fd"`` (Fréchet distance, FID
            with Inception features) or ``"kid"``.
        features: ``"digits"``, ``"inception"`` or a TorchScript path (see
            :func:`load_feature_extractor`); None: the model's own choice
            (``model.default_features``, Inception for Stable Diffusion), else digits.
        reference: a folder of images, an ``.npz``, ``cleanfid:NAME/SPLIT/RES``, or
            ``self[:SAMPLER:NFE[:N]]`` (the model's own samples at ρ = 1, see
            ``skiptune.objectives._self_reference``); None takes the model's own
            (``model.reference`` in ``skiptune/assets/``).
        rungs: sample counts N at which the score is computed, strictly increasing, each ≥ 2;
            a larger rung reuses the smaller ones' samples (the same seeds).
        batch_size: samples generated (and featurised) at once.
        schedule_exponent: exponent of the Karras σ grid (EDM's ρ = 7, never the skip factor).
    """

    metric: str = "fd"
    features: str | None = None
    reference: str | None = None
    rungs: tuple[int, ...] = (16, 64)      # chosen by benchmarks/anytime.py (docs/search.md)
    batch_size: int = 128
    schedule_exponent: float = 7.0

    def __post_init__(self) -> None:
        # Path-like features/reference become strings so the config stays JSON-able.
        if self.features is not None:
            object.__setattr__(self, "features", os.fspath(self.features))
            if not self.features:
                raise ConfigurationError("features must name an extractor, e.g. 'digits'")
        if self.reference is not None:
            object.__setattr__(self, "reference", os.fspath(self.reference))
            if is_self_reference(self.reference):
                parse_self_reference(self.reference)    # a bad spec fails before any model
            elif self.reference.startswith(CLEANFID_PREFIX):
                parse_cleanfid_spec(self.reference)     # and before Inception is loaded
        if isinstance(self.rungs, (list, tuple)):
            object.__setattr__(self, "rungs", tuple(self.rungs))
        else:
            raise ConfigurationError(
                f"rungs must be a tuple of sample counts such as (64, 256), got {self.rungs!r}"
            )
        get_metric(self.metric)     # an unknown name lists the registered ones
        rungs = self.rungs
        if not rungs or not all(is_whole(n) and n >= 2 for n in rungs):
            raise ConfigurationError(
                f"rungs must be sample counts ≥ 2 such as (64, 256), got {rungs!r}"
            )
        if any(later <= earlier for earlier, later in itertools.pairwise(rungs)):
            raise ConfigurationError(
                f"rungs must be strictly increasing sample counts, got {rungs!r}; pass e.g. "
                "(64, 256), each rung reusing the samples of the ones before"
            )
        if not is_whole(self.batch_size) or self.batch_size < 1:
            raise ConfigurationError(
                f"batch_size must be a whole number ≥ 1, got {self.batch_size!r}"
            )
        exponent = self.schedule_exponent
        if not isinstance(exponent, numbers.Real) or not math.isfinite(exponent) or exponent <= 0:
            raise ConfigurationError(
                f"schedule_exponent must be a finite number > 0, got {exponent!r}"
            )

    @property
    def num_samples(self) -> int:
        """Samples a full evaluation generates: the last rung."""
        return self.rungs[-1]

    def for_budget(
        self, *, sampler: str, nfe: int, seed: int, default_features: str | None = None
    ) -> ObjectiveConfig:
        """These settings at one sampler, budget and seed; ``features`` None becomes
        ``default_features`` (a model's own choice) or the digit network."""
        values = {f.name: getattr(self, f.name) for f in fields(ObjectiveSettings)}
        values["features"] = self.features or default_features or "digits"
        return ObjectiveConfig(sampler=sampler, nfe=nfe, seed=seed, **values)


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig(ObjectiveSettings):
    """Everything that determines a proxy score: the settings at one sampler, NFE and seed.

    Resolved once per study and stored with it; :func:`build_objective` builds from it.

    Attributes:
        sampler: a name in ``skiptune.sampling.SAMPLERS`` (``"heun"``, ``"dpmpp_2m"``…).
        nfe: exact number of denoiser evaluations per sample.
        seed: sample j is drawn from seed ``seed + j`` (common random numbers).
        features: as in :class:`ObjectiveSettings`, with ``"digits"`` the default.
        (the other attributes: :class:`ObjectiveSettings`)
    """

    sampler: str
    nfe: int
    seed: int = 0
    features: str = "digits"

    def __post_init__(self) -> None:
        if self.features is None:
            raise ConfigurationError("features must name an extractor, e.g. 'digits'")
        super().__post_init__()
        get_sampler(self.sampler).steps_for_nfe(self.nfe)  # raises for an unreachable budget
        if not is_whole(self.seed) or self.seed < 0:
            raise ConfigurationError(f"seed must be a whole number ≥ 0, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (rungs as a list)."""
        data = asdict(self)
        data["rungs"] = list(self.rungs)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectiveConfig:
        """Build from :meth:`to_dict`'s output; unknown or missing keys are a ConfigurationError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown objective config keys {unknown}; use {sorted(known)}"
            )
        missing = sorted({"sampler", "nfe"} - set(data))
        if missing:
            raise ConfigurationError(f"objective config lacks {missing}")
        values = dict(data)
        if isinstance(values.get("rungs"), list):
            values["rungs"] = tuple(values["rungs"])
        return cls(**values)
