"""The proxy objective: score a skip schedule by FD or KID of fixed-seed samples, rung by rung."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiptune._failpoints import failpoint
from skiptune._memory import is_out_of_memory
from skiptune.errors import (
    ConfigurationError,
    InsufficientMemoryError,
    NonFiniteSampleError,
    first_line,
)
from skiptune.models import TunableModel
from skiptune.objectives._cache import DirectoryStatisticsCache, StatisticsCache
from skiptune.objectives._config import ObjectiveConfig
from skiptune.objectives._features import FeatureExtractor, load_feature_extractor
from skiptune.objectives._maths import _symmetric_sqrt
from skiptune.objectives._metrics import get_metric
from skiptune.objectives._paths import ASSETS_DIR
from skiptune.objectives._reference import ReferenceStatistics, load_reference
from skiptune.objectives._samples import sampled_images
from skiptune.objectives._self_reference import (
    ReferenceProgress,
    SelfReference,
    is_self_reference,
    parse_self_reference,
    self_reference_statistics,
)
from skiptune.sampling import SeededStepNoise, initial_noise, sample, sigma_grid
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from skiptune.steps import StepGrid

__all__ = [
    "BatchReduced",
    "CandidateReport",
    "Evaluation",
    "ProxyObjective",
    "RungReport",
    "build_objective",
    "evaluate",
]

OBJECTIVE_VERSION = 1
"""Bumped whenever the same configuration would score differently; part of the identity."""

CandidateReport = Callable[[int, int, int, float], None]
"""``report(candidate, rung_index, num_samples, value)`` of :meth:`ProxyObjective.evaluate_many`."""

RungReport = Callable[[int, int, float], None]
"""``report(rung_index, num_samples, value)``, called after each rung; it may raise."""

BatchReduced = Callable[[int, int, str], None]
"""``on_batch_reduced(failed, now, reason)``: a batch of ``failed`` images ran out of memory;
batches now hold at most ``now``. ``reason`` is the first line of the allocator's error."""


@dataclass(frozen=True)
class Evaluation:
    """The score of one schedule.

    Attributes:
        value: the metric at the last rung reached (FD or KID, lower is better).
        rung_values: ((N, value), …) for each rung computed, in order.
        num_samples: images generated.
        seconds_sampling: wall time in the sampler (U-Net evaluations, and a VAE's decoding).
        seconds_features: wall time in the feature extractor.
        seconds_total: wall time of the whole evaluation (also the metric and bookkeeping).
    """

    value: float
    rung_values: tuple[tuple[int, float], ...]
    num_samples: int
    seconds_sampling: float
    seconds_features: float
    seconds_total: float
    # Features [N, D] of the samples, only when asked for (``keep_features``): validation
    # bootstraps them; a trial never keeps them.
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    # The first ``keep_images`` images [K, C, H, W] in [-1, 1], on the CPU: validation draws
    # its sample grids from them instead of sampling the same seeds again.
    images: torch.Tensor | None = field(default=None, compare=False, repr=False)


def _as_schedule(schedule: TuningSchedule | Mapping[str, Any] | torch.Tensor) -> Any:
    """What skip_tuning takes: a TuningSchedule, one built from a mapping, or a factor tensor."""
    if isinstance(schedule, TuningSchedule):
        return schedule
    if isinstance(schedule, Mapping):
        return TuningSchedule.from_dict(schedule)
    if isinstance(schedule, torch.Tensor) and schedule.ndim == 1:
        return schedule
    raise ConfigurationError(
        "a schedule must be a TuningSchedule, a mapping such as {'rho_bottom': 0.6} or a factor "
        f"tensor [num_skips], got {type(schedule).__name__}"
    )


class ProxyObjective:
    """Scores skip schedules of one model by proxy FID (or KID) on fixed-seed samples.

    Build it with :func:`build_objective`. The extractor and reference are resolved once;
    :meth:`evaluate` then only samples, featurises and compares.
    """

    def __init__(
        self,
        model: TunableModel,
        config: ObjectiveConfig,
        *,
        extractor: FeatureExtractor,
        reference: ReferenceStatistics,
        self_reference: SelfReference | None = None,  # when the reference is the model's own
    ) -> None:
        if reference.feature_dim != extractor.feature_dim:
            raise ConfigurationError(
                f"reference {reference.source} is {reference.feature_dim}-d but the extractor "
                f"gives {extractor.feature_dim}-d features; use matching objective.reference "
                "and objective.features",
                field=("objective.reference", "objective.features"),
            )
        if get_metric(config.metric).needs_reference_features and reference.features is None:
            raise ConfigurationError(
                f"KID needs reference features, and reference {reference.source} has none; "
                "load it with need_features=True or use metric 'fd'"
            )
        self.model = model
        self.config = config
        self.extractor = extractor
        self.reference = reference
        self.self_reference = self_reference
        # Images per batch now: config.batch_size until a batch runs out of memory, then
        # halved (and kept, so later trials do not run out again). Not part of the identity:
        # sample j always starts from seed + j, so the split never changes the images.
        self.batch_size = config.batch_size
        # √Σ_ref is the same for every trial: one eigen-decomposition instead of one per trial.
        self._reference_root = _symmetric_sqrt(reference.sigma)

    @property
    def identity(self) -> dict[str, Any]:
        """What the scores depend on; a resumed study must find the same dict.

        Keys: ``objective_version``, ``model`` (weights fingerprint), ``extractor_identity``
        (name and weights hash), ``reference_identity`` (hash of mu and sigma),
        ``reference_count``, ``condition`` (a conditional model's conditioner identity, e.g.
        the class labels the user fixed; absent for unconditional models), ``dtype`` (what
        the net computes in; absent for float32), ``one_step_sigma`` (a one-step
        generator's σ_init; absent otherwise), ``self_reference`` (the resolved
        ``self:SAMPLER:NFE:N``, its seed and statistics key; only for a self-reference), and
        every field of the config (``reference`` there is the source as given, None for the
        model's default).
        """
        identity = {
            "objective_version": OBJECTIVE_VERSION,
            "model": self.model.fingerprint,
            "extractor_identity": self.extractor.identity,
            "reference_identity": self.reference.identity,
            "reference_count": self.reference.count,
            **self.config.to_dict(),
        }
        if self.model.dtype != torch.float32:
            # Only when not float32, so that a float32 study stored before dtypes existed
            # still resumes; a float16 study is not a float32 study.
            identity["dtype"] = str(self.model.dtype).removeprefix("torch.")
        if self.model.conditioner is not None:
            # Only for conditional models: an unconditional study's stored identity stays
            # as it was, so it still resumes.
            identity["condition"] = self.model.conditioner.identity
        if "one_step_sigma" in self.model.metadata:
            # Only for one-step generators, for the same reason: the same weights started
            # at another σ_init are another generator.
            identity["one_step_sigma"] = self.model.metadata["one_step_sigma"]
        if self.self_reference is not None:
            # Only for self-references, for the same reason: a changed self spec (sampler,
            # NFE, N) is another measurement even where the numbers happen to agree.
            identity["self_reference"] = self.self_reference.to_dict()
        return identity

    def score(self, features: np.ndarray) -> float:
        """The metric of generated features float [N, D] against the reference."""
        metric = get_metric(self.config.metric)
        return metric.score(features, self.reference, self.config.seed, self._reference_root)

    def evaluate(
        self,
        schedule: TuningSchedule | Mapping[str, Any] | torch.Tensor,
        *,
        report: RungReport | None = None,  # called after each rung; may raise to stop
        on_batch_reduced: BatchReduced | None = None,  # told when a batch runs out of memory
        keep_features: bool = False,       # return the samples' features in the Evaluation
        keep_images: int = 0,              # return the first this many images too
    ) -> Evaluation:
        """Sample under ``schedule`` and score the samples at each rung.

        Sample j starts from the noise of seed ``config.seed + j``, so every schedule sees the
        same noise and a larger rung extends a smaller one. Images are generated batch by
        batch (at most ``batch_size``; a batch never straddles a rung, so a rung's samples do
        not depend on the rungs after it) and only their features are kept. After rung k
        with N_k samples, ``report(k, N_k, value)`` is called; whatever it raises (e.g.
        ``optuna.TrialPruned``) propagates and stops the evaluation.

        A batch that runs out of memory (GPU or CPU) is retried with half as many images, and
        batches stay that small from then on; ``on_batch_reduced`` is told once per halving.
        The score is the same up to float rounding, since every sample has its own seed.

        Args:
            schedule: a :class:`TuningSchedule`, a mapping for ``TuningSchedule.from_dict`` or a
                factor tensor [num_skips] (bottom → top).
            report: optional rung callback.
            on_batch_reduced: optional ``(failed, now, reason)`` callback.

        Returns:
            The :class:`Evaluation` (value at the last rung, all rung values, timings).

        Raises:
            NonFiniteSampleError: the sampler produced NaN or infinite images.
            InsufficientMemoryError: even one image at a time does not fit in memory.
        """
        config, model = self.config, self.model
        factors = _as_schedule(schedule)
        steps = factors.steps if isinstance(factors, TuningSchedule) else None
        started = time.perf_counter()
        seconds_sampling = seconds_features = 0.0
        chunks: list[np.ndarray] = []
        kept: list[torch.Tensor] = []
        rung_values: list[tuple[int, float]] = []
        done = 0
        with skip_tuning(model, factors):
            for index, rung in enumerate(config.rungs):
                while done < rung:
                    count = min(self.batch_size, rung - done)
                    try:
                        images, features, sampling, featurising = self._batch(
                            done, count, steps)
                    except RuntimeError as e:      # torch.OutOfMemoryError is one
                        if not is_out_of_memory(e):
                            raise
                        reason = first_line(e)[:200]
                    else:
                        chunks.append(features)
                        if done < keep_images:
                            kept.append(images[:keep_images - done].clamp(-1, 1).cpu())
                        del images             # not held while the next batch is sampled
                        seconds_sampling += sampling
                        seconds_features += featurising
                        done += count
                        continue
                    # Outside the except block: the error's traceback holds the failed batch's
                    # tensors, and they must be freed before a smaller batch is tried.
                    self._reduce_batch(count, reason, on_batch_reduced)
                value = self.score(np.concatenate(chunks))
                rung_values.append((rung, value))
                if report is not None:
                    report(index, rung, value)
        return Evaluation(
            value=rung_values[-1][1],
            rung_values=tuple(rung_values),
            num_samples=done,
            seconds_sampling=seconds_sampling,
            seconds_features=seconds_features,
            seconds_total=time.perf_counter() - started,
            features=np.concatenate(chunks) if keep_features else None,
            images=torch.cat(kept) if kept else None,
        )

    def evaluate_many(
        self,
        schedules: Sequence[TuningSchedule],
        *,
        report: CandidateReport | None = None,  # called per candidate after each rung
        on_batch_reduced: BatchReduced | None = None,  # told when a batch runs out of memory
    ) -> list[Evaluation | BaseException]:
        """Score several schedules at once: each batch samples every candidate's images
        together, with per-sample factors (``skip_tuning`` with one schedule per sample).

        The same as :meth:`evaluate` on each schedule in turn, on the same seeds, up to float
        rounding (a batch of other size may sum in another order). ``report(candidate, k,
        N_k, value)`` is called after rung k; what it raises (``optuna.TrialPruned``) stops
        that candidate only and takes its place in the returned list, as does a
        NonFiniteSampleError of that candidate's own samples. σ windows and step grids are
        per batch and are not batched: pass such schedules to :meth:`evaluate`.

        A batch that runs out of memory is retried with half as many images, as in
        :meth:`evaluate` (``on_batch_reduced`` is told once per halving); below one image
        per candidate, the candidates are sampled in groups.

        Raises:
            InsufficientMemoryError: even one image at a time does not fit in memory.
        """
        config = self.config
        count = len(schedules)
        if any(s.samples_alone for s in schedules):
            raise ConfigurationError(
                "σ-window and step-grid schedules are evaluated one at a time; use evaluate()"
            )
        chunks: list[list[np.ndarray]] = [[] for _ in range(count)]
        outcome: list[Evaluation | BaseException | None] = [None] * count
        rung_values: list[list[tuple[int, float]]] = [[] for _ in range(count)]
        started = time.perf_counter()
        done = 0
        for index, rung in enumerate(config.rungs):
            while done < rung:
                active = [c for c in range(count) if outcome[c] is None]
                if not active:
                    break
                size = min(max(1, self.batch_size // len(active)), rung - done)
                try:
                    step = self._step_many(schedules, active, done, size)
                except RuntimeError as e:      # torch.OutOfMemoryError is one
                    if not is_out_of_memory(e):
                        raise
                    reason = first_line(e)[:200]
                else:
                    for c, features in step:
                        if isinstance(features, BaseException):
                            outcome[c] = features
                        else:
                            chunks[c].append(features)
                    done += size
                    continue
                # Outside the except block, as in evaluate(): the traceback holds the tensors.
                largest_group = min(len(active), max(1, self.batch_size // size))
                self._reduce_batch(largest_group * size, reason, on_batch_reduced)
            for c in range(count):
                if outcome[c] is not None:
                    continue
                value = self.score(np.concatenate(chunks[c]))
                rung_values[c].append((rung, value))
                try:
                    if report is not None:
                        report(c, index, rung, value)
                except Exception as e:       # optuna.TrialPruned: this candidate stops
                    outcome[c] = e
        elapsed = time.perf_counter() - started
        for c in range(count):
            if outcome[c] is None:
                outcome[c] = Evaluation(
                    value=rung_values[c][-1][1], rung_values=tuple(rung_values[c]),
                    # One batch served every candidate: each is charged an equal share.
                    num_samples=done, seconds_sampling=elapsed / count,
                    seconds_features=0.0, seconds_total=elapsed / count,
                )
        return [o for o in outcome if o is not None]

    def _step_many(
        self, schedules: Sequence[TuningSchedule], active: list[int], start: int, count: int
    ) -> list[tuple[int, np.ndarray | BaseException]]:
        """Samples ``start`` … ``start + count − 1`` of every active candidate, in groups of
        at most ``batch_size`` images (one group, unless memory forced a batch smaller than
        one image per candidate). Nothing is kept of a step that fails."""
        per_group = max(1, self.batch_size // count)
        results: list[tuple[int, np.ndarray | BaseException]] = []
        for first in range(0, len(active), per_group):
            group = active[first:first + per_group]
            results.extend(self._batch_many(schedules, group, start, count))
        return results

    def _batch_many(
        self, schedules: Sequence[TuningSchedule], active: list[int], start: int, count: int
    ) -> list[tuple[int, np.ndarray | BaseException]]:
        """Features of samples ``start`` … ``start + count − 1`` under each active schedule,
        sampled in one batch; a candidate whose samples are non-finite gets the error."""
        config, model = self.config, self.model
        noise = initial_noise(count, model.noise_shape, seed=config.seed, start=start)
        first = config.seed + start
        seeds = list(range(first, first + count))
        condition = model.condition_for(seeds * len(active))
        per_sample = [schedules[c] for c in active for _ in range(count)]
        try:
            with skip_tuning(model, per_sample):
                images = sample(model, noise.repeat(len(active), *([1] * (noise.ndim - 1))),
                                sampler=config.sampler, nfe=config.nfe,
                                schedule_exponent=config.schedule_exponent, condition=condition,
                                step_noise=SeededStepNoise(count, model.noise_shape,
                                                           seed=config.seed, start=start,
                                                           copies=len(active)))
        except NonFiniteSampleError:
            if len(active) == 1:
                raise
            # One candidate diverged and failed the batch: sample each alone to tell which.
            results: list[tuple[int, np.ndarray | BaseException]] = []
            for c in active:
                try:
                    results.extend(self._batch_many(schedules, [c], start, count))
                except NonFiniteSampleError as e:
                    results.append((c, e))
            return results
        images = model.to_images(images)
        features = np.asarray(self.extractor(images), dtype=np.float64)
        return [(c, features[i * count:(i + 1) * count]) for i, c in enumerate(active)]

    def for_validation(self, *, num_samples: int, seed: int) -> ProxyObjective:
        """The same measurement (model, sampler, extractor, reference) on other seeds: one
        rung of ``num_samples`` images, sample j from seed ``seed + j``.

        Validation re-scores a study's best schedules on seeds no trial used; the extractor,
        the reference and its √Σ are shared, not loaded again.
        """
        config = replace(self.config, rungs=(int(num_samples),), seed=int(seed))
        other = copy.copy(self)
        other.config = config
        return other

    def _batch(self, start: int, count: int, steps: StepGrid | None = None
               ) -> tuple[torch.Tensor, np.ndarray, float, float]:
        """Images and features of samples ``start`` … ``start + count − 1`` (on the σ grid
        ``steps``, or the sampler's own), and seconds spent on each part."""
        config = self.config
        tick = time.perf_counter()
        images = sampled_images(self.model, sampler=config.sampler, nfe=config.nfe,
                                schedule_exponent=config.schedule_exponent, seed=config.seed,
                                start=start, count=count, steps=steps)
        tock = time.perf_counter()
        features = np.asarray(self.extractor(images), dtype=np.float64)
        failpoint("features-batch")
        return images, features, tock - tick, time.perf_counter() - tock

    def _reduce_batch(
        self, failed: int, reason: str, on_batch_reduced: BatchReduced | None
    ) -> None:
        """Halve the batch after ``failed`` images ran out of memory, or give up at one."""
        device = self.model.device
        if failed <= 1:
            raise InsufficientMemoryError(
                f"out of memory on {device} even with one image per batch ({reason}); free "
                "memory there (other processes?) or choose another device with device",
                field="device",
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()       # hand the failed batch's blocks back before retrying
        self.batch_size = failed // 2
        if on_batch_reduced is not None:
            on_batch_reduced(failed, self.batch_size, reason)


def _default_reference(model: TunableModel) -> Path:
    """The reference a model names in its metadata, in ``skiptune/assets/``."""
    name = model.reference
    if not name:
        raise ConfigurationError(
            "the model carries no default reference statistics; pass objective.reference (a "
            "folder of real images or an .npz with mu and sigma) and objective.features "
            "(digits, inception or a TorchScript file)",
            field=("objective.reference", "objective.features"),
        )
    path = ASSETS_DIR / str(name)
    if not path.is_file():
        raise ConfigurationError(
            f"the model names reference {name!r}, but {path} does not exist; run "
            "python -m skiptune.objectives.mnist_reference or pass objective.reference",
            field="objective.reference",
        )
    return path


def build_objective(
    model: TunableModel,
    config: ObjectiveConfig,
    *,
    device: torch.device | str | None = None,  # where features are computed; default: model's
    cache: StatisticsCache | None = None,      # reference statistics cache (folder sources)
    inception_weights: str | os.PathLike[str] | None = None,  # for features "inception"
    progress: bool = True,                     # progress bar while computing a reference
    on_reference: ReferenceProgress | None = None,  # (spec, done, N) while sampling `self`
) -> ProxyObjective:
    """Resolve the feature extractor and reference statistics of ``config`` for ``model``.

    The reference is ``config.reference`` or, when None, the one the model's metadata names
    (the demonstration model names the shipped ``mnist_reference.npz``). A ``self`` reference
    is sampled from ``model`` at ρ = 1 (no skip hooks may be installed), unless ``cache``
    holds its statistics already; ``on_reference`` is told its progress.

    Raises:
        ConfigurationError: the sampler cannot run on the model, no reference can be found,
            the extractor cannot take the model's images, or the reference does not match
            the extractor or (a folder) the model's resolution and channels.
    """
    extractor = load_feature_extractor(
        config.features, device=device, model=model, inception_weights=inception_weights
    )
    source = config.reference if config.reference is not None else _default_reference(model)
    # The σ grid now, not in the first trial: a sampler the model cannot run (ddim on a
    # continuous-σ model) must fail before a study is created for it.
    sigma_grid(
        model, sampler=config.sampler, nfe=config.nfe, schedule_exponent=config.schedule_exponent
    )
    needs_features = get_metric(config.metric).needs_reference_features
    self_reference = None
    resolved: str | os.PathLike[str] | ReferenceStatistics = source
    if is_self_reference(source):
        resolved, self_reference = self_reference_statistics(
            model, parse_self_reference(source), extractor,
            schedule_exponent=config.schedule_exponent, batch_size=config.batch_size,
            cache=DirectoryStatisticsCache() if cache is None else cache,
            need_features=needs_features, progress=on_reference,
        )
    reference = load_reference(
        resolved,
        extractor,
        cache=cache,
        progress=progress,
        need_features=needs_features,
        image_shape=model.image_shape,
    )
    return ProxyObjective(model, config, extractor=extractor, reference=reference,
                          self_reference=self_reference)


def evaluate(
    model: TunableModel,
    schedule: TuningSchedule | Mapping[str, Any] | torch.Tensor,
    *,
    sampler: str,                          # a name in SAMPLERS
    nfe: int,                              # exact denoiser evaluations per sample
    num_samples: int,                      # N, samples seeded seed .. seed + N − 1
    metric: str = "fd",                    # a name in METRICS: "fd" or "kid"
    seed: int = 0,
    batch_size: int = 128,
    features: str = "digits",              # "digits", "inception" or a TorchScript path
    reference: str | None = None,          # default: the model's own reference
    device: torch.device | str | None = None,
    cache: StatisticsCache | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
) -> float:
    """Proxy FID (or KID) of ``model`` under ``schedule`` at ``num_samples`` samples.

    One call of :func:`build_objective` and :meth:`ProxyObjective.evaluate` with a single
    rung; to score many schedules, build the objective once instead.

    Returns:
        The metric value (lower is better).
    """
    config = ObjectiveConfig(
        sampler=sampler,
        nfe=nfe,
        metric=metric,
        features=features,
        reference=reference,
        rungs=(num_samples,),
        seed=seed,
        batch_size=batch_size,
    )
    objective = build_objective(
        model, config, device=device, cache=cache, inception_weights=inception_weights
    )
    return objective.evaluate(schedule).value
