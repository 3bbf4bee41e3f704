"""``--ref self``: reference statistics from the model's own samples at ρ = 1 and a high budget.

A user with no dataset (most Stable Diffusion users) scores a schedule against what the
untuned model makes with many steps: the search then looks for the ρ that brings a few-step
sampler closest to the model's own high-NFE distribution ("50-step quality at 15 steps").

Spec: ``self`` (Heun at EDM's budget for the model's resolution: 35 NFE up to 32 pixels a
side, 79 NFE above; N = max(1,024, D + 1) for D-dimensional features), ``self:SAMPLER:NFE``
or ``self:SAMPLER:NFE:N``. Why those defaults:

* Heun at 35 NFE (18 steps) is EDM's budget for CIFAR-10 at 32×32, and 79 NFE (40 steps)
  its budget for FFHQ, AFHQv2 and ImageNet at 64×64, where its FID has converged (Karras et
  al. 2022, fig. 2): more steps no longer change the distribution measurably, so the
  reference is the model's own limit, not a sampler's error.
* D + 1 samples is the fewest that give a full-rank D×D covariance; at least 1,024 keeps the
  reference's own sampling noise well below the differences between schedules (the digit
  features' D = 128 gets 1,024; Inception's D = 2,048 gets 2,049).

Seeds: the reference's sample j is drawn from seed ``SELF_REFERENCE_SEED + j`` = 2⁶² + j.
Trials use ``seed`` … ``seed + last rung − 1`` and validation the next ``validation N``
seeds, both from the study's seed (small, ≥ 0) upward; :func:`check_disjoint_seeds` refuses
a study whose seeds would reach 2⁶².

The statistics are computed once, batch by batch (memory bounded by the batch, not N), and
cached under a key holding every input that shapes them: the weights fingerprint, the
sampler, NFE, σ-grid exponent, N, the seeds, the feature extractor, and a conditional
model's condition (for Stable Diffusion the prompts' embedding hash and the guidance scale).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

import numpy as np

from skiptune._checks import is_whole
from skiptune._parsing import parse_whole
from skiptune.errors import ConfigurationError
from skiptune.objectives._cache import StatisticsCache, statistics_key
from skiptune.sampling.solvers import get_sampler

if TYPE_CHECKING:
    from skiptune.models import TunableModel
    from skiptune.objectives._features import FeatureExtractor
    from skiptune.objectives._reference import ReferenceStatistics

__all__ = [
    "DEFAULT_SELF_NFE",
    "DEFAULT_SELF_SAMPLER",
    "MIN_SELF_SAMPLES",
    "SELF_REFERENCE_SEED",
    "SelfReference",
    "SelfReferenceSpec",
    "check_disjoint_seeds",
    "is_self_reference",
    "parse_self_reference",
    "self_reference_statistics",
]

SELF_PREFIX = "self"
DEFAULT_SELF_SAMPLER = "heun"
DEFAULT_SELF_NFE = {32: 35, None: 79}
"""EDM's Heun budgets by the largest image side: 35 NFE up to 32 pixels, 79 NFE above."""
MIN_SELF_SAMPLES = 1_024
SELF_REFERENCE_SEED = 2**62
"""Seed of the self-reference's sample 0: far above any trial's or validation's seeds."""
_VERSION = 1                        # bumped whenever the same spec would give other statistics
_FORMAT = "self, self:SAMPLER:NFE or self:SAMPLER:NFE:N (e.g. self:heun:79:2048)"

TIMING_BATCH = 8
"""Images in the reference's first batch: a run learns within seconds how long it will take."""


class ReferenceProgress(Protocol):
    """``progress(spec, done, total, cached=...)``: samples of self-reference ``spec`` drawn
    so far; ``cached``: its statistics came from the cache, nothing is sampled."""

    def __call__(self, spec: str, done: int, total: int, *, cached: bool = False) -> None: ...


@dataclass(frozen=True)
class SelfReferenceSpec:
    """A parsed ``self[:SAMPLER:NFE[:N]]``; ``num_samples`` None: the features' default."""

    sampler: str = DEFAULT_SELF_SAMPLER
    nfe: int | None = None
    num_samples: int | None = None

    def nfe_for(self, image_shape: tuple[int, ...]) -> int:
        """NFE for images of ``image_shape`` (C, H, W): as given, else EDM's budget for it."""
        if self.nfe is not None:
            return self.nfe
        return DEFAULT_SELF_NFE[32] if max(image_shape[1:]) <= 32 else DEFAULT_SELF_NFE[None]

    def samples_for(self, feature_dim: int) -> int:
        """N for features of ``feature_dim``: as given, else max(1,024, D + 1)."""
        if self.num_samples is not None:
            return self.num_samples
        return max(MIN_SELF_SAMPLES, int(feature_dim) + 1)


@dataclass(frozen=True)
class SelfReference:
    """A resolved self-reference: what was sampled and the cache key of its statistics."""

    sampler: str
    nfe: int
    num_samples: int
    seed: int
    key: str

    @property
    def spec(self) -> str:
        """The canonical spec, ``self:SAMPLER:NFE:N``."""
        return f"{SELF_PREFIX}:{self.sampler}:{self.nfe}:{self.num_samples}"

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed, "statistics_key": self.key}


def is_self_reference(source: object) -> TypeGuard[str]:
    """Whether ``source`` is a ``self`` spec (a folder named ``self`` is ``./self``)."""
    return isinstance(source, str) and (
        source == SELF_PREFIX or source.startswith(SELF_PREFIX + ":")
    )


def parse_self_reference(text: str) -> SelfReferenceSpec:
    """``self``, ``self:SAMPLER:NFE`` or ``self:SAMPLER:NFE:N`` as a :class:`SelfReferenceSpec`.

    Raises:
        ConfigurationError: another form, an unknown sampler, a budget the sampler cannot
            meet exactly (naming the nearest it can), or N not a whole number ≥ 2.
    """
    parts = text.split(":")
    if parts[0] != SELF_PREFIX or len(parts) not in (1, 3, 4):
        raise ConfigurationError(f"reference {text!r} must read {_FORMAT}")
    if len(parts) == 1:
        return SelfReferenceSpec()
    sampler, nfe_text, *rest = parts[1:]
    try:
        spec = get_sampler(sampler)
    except ConfigurationError as e:
        raise ConfigurationError(f"reference {text!r}: {e}") from e
    nfe = _whole(nfe_text, text=text, what="NFE", least=1)
    try:
        spec.steps_for_nfe(nfe)
    except ConfigurationError as e:
        raise ConfigurationError(f"reference {text!r}: {e}") from e
    num_samples = _whole(rest[0], text=text, what="N", least=2) if rest else None
    return SelfReferenceSpec(sampler=sampler, nfe=nfe, num_samples=num_samples)


def _whole(value: str, *, text: str, what: str, least: int) -> int:
    try:
        number: int | None = parse_whole(value)       # ASCII digits: not '٣٢', not '1_1'
    except ConfigurationError:
        number = None
    if number is None or number < least:
        raise ConfigurationError(
            f"reference {text!r} has {what} {value!r}, not a whole number ≥ {least}; "
            f"write {_FORMAT}"
        )
    return number


def check_disjoint_seeds(*, seed: int, count: int) -> None:
    """Refuse trial and validation seeds ``seed`` … ``seed + count − 1`` that would reach the
    self-reference's (from :data:`SELF_REFERENCE_SEED` up): the reference would then share
    samples with the trials it judges."""
    if not is_whole(seed) or not is_whole(count) or seed + count > SELF_REFERENCE_SEED:
        raise ConfigurationError(
            f"seeds {seed} … {seed + count - 1} of the trials and validation reach 2**62, where "
            "the self-reference's seeds begin; pass a smaller seed",
            field="seed",
        )


def _identity(
    model: TunableModel,
    extractor: FeatureExtractor,
    *,
    sampler: str,
    nfe: int,
    num_samples: int,
    schedule_exponent: float,
) -> dict[str, Any]:
    """Everything the statistics depend on (what the cache key hashes)."""
    identity: dict[str, Any] = {
        "kind": "self-reference",
        "version": _VERSION,
        "model": model.fingerprint,
        "sampler": sampler,
        "nfe": nfe,
        "schedule_exponent": float(schedule_exponent),
        "num_samples": num_samples,
        "seed": SELF_REFERENCE_SEED,
        "extractor": extractor.identity,
        "condition": None if model.conditioner is None else model.conditioner.identity,
    }
    if "one_step_sigma" in model.metadata:     # only then: other keys stay as they were
        identity["one_step_sigma"] = model.metadata["one_step_sigma"]
    return identity


def _batches(total: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, count) of each batch: a first one of :data:`TIMING_BATCH` images at most, so
    that the first progress report (and its time estimate) comes within seconds, then
    ``batch_size``. Each image has its own seed: the partition changes no image's noise."""
    first = min(TIMING_BATCH, batch_size, total)
    starts = [0, *range(first, total, batch_size)] if total else []
    return [(start, min(first if start == 0 else batch_size, total - start))
            for start in starts]


def self_reference_statistics(
    model: TunableModel,
    spec: SelfReferenceSpec,
    extractor: FeatureExtractor,
    *,
    schedule_exponent: float,              # Karras grid exponent of the reference's sampler
    batch_size: int,                       # samples drawn (and featurised) at once
    cache: StatisticsCache,                # where the statistics are kept; checked first
    need_features: bool = False,           # keep a feature sample for KID (no cache reuse)
    progress: ReferenceProgress | None = None,  # told (spec, done, N) after each batch
) -> tuple[ReferenceStatistics, SelfReference]:
    """The Gaussian fit of ``extractor``'s features of the model's own samples at ρ = 1.

    Sample j is drawn from seed ``SELF_REFERENCE_SEED + j`` with ``spec.sampler`` at
    ``spec.nfe_for(model.image_shape)``; the model must carry no skip hooks (the caller's
    ρ = 1). A cache hit returns the stored statistics without sampling; a miss samples N
    images batch by batch, keeping running sums only, and stores (μ, Σ) under the key.

    Returns:
        The statistics (``source`` the canonical spec, ``count`` N) and the resolved
        :class:`SelfReference`.
    """
    # Here, not above: a spec is parsed (a study's config read back) without torch.
    from skiptune.objectives._reference import (
        ReferenceStatistics,
        _kid_sample,
        _RunningStatistics,
    )
    from skiptune.objectives._samples import sampled_images

    num_samples = spec.samples_for(extractor.feature_dim)
    nfe = spec.nfe_for(model.image_shape)
    identity = _identity(model, extractor, sampler=spec.sampler, nfe=nfe,
                         num_samples=num_samples, schedule_exponent=schedule_exponent)
    content = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    key = statistics_key(content_hash=content, extractor_identity=extractor.identity)
    resolved = SelfReference(sampler=spec.sampler, nfe=nfe, num_samples=num_samples,
                             seed=SELF_REFERENCE_SEED, key=key)
    hit = None if need_features else cache.get(key)
    if hit is not None:
        if progress is not None:
            progress(resolved.spec, num_samples, num_samples, cached=True)
        return ReferenceStatistics.from_statistics(
            *hit, source=resolved.spec, count=num_samples, extractor=extractor.identity
        ), resolved
    running = _RunningStatistics()
    chunks: list[np.ndarray] = []
    if progress is not None:
        progress(resolved.spec, 0, num_samples)
    for start, count in _batches(num_samples, batch_size):
        images = sampled_images(model, sampler=spec.sampler, nfe=nfe,
                                schedule_exponent=schedule_exponent,
                                seed=SELF_REFERENCE_SEED, start=start, count=count)
        features = np.asarray(extractor(images), dtype=np.float64)
        running.add(features)
        if need_features:
            chunks.append(features.astype(np.float32))
        if progress is not None:
            progress(resolved.spec, start + count, num_samples)
    mu, sigma = running.result()
    cache.put(key, mu, sigma, meta={"source": resolved.spec, "count": num_samples, **identity})
    return ReferenceStatistics.from_statistics(
        mu, sigma, source=resolved.spec, count=num_samples, extractor=extractor.identity,
        features=_kid_sample(np.concatenate(chunks)) if need_features else None,
    ), resolved
