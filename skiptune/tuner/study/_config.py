"""The typed configuration: a search as the user asks it, and each study as it is stored.

``SearchConfig`` is built at the edge (the command line, or a script) and validated then;
``StudyConfig`` is one of its budgets resolved against the model, stored with the study and
compared on every resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError
from skiptune.objectives import (
    ObjectiveConfig,
    ObjectiveSettings,
    is_self_reference,
    parse_self_reference,
)
from skiptune.sampling import MAX_SEED
from skiptune.sampling.solvers import DEFAULT_SAMPLER, steps_for_nfe
from skiptune.schedule import SHAPES, check_sigma_window
from skiptune.tuner.study._identity import check_group, study_name

__all__ = [
    "MAX_RUNG",
    "OPTIMIZERS",
    "SPACE_KINDS",
    "SearchConfig",
    "SearchSpace",
    "StudyConfig",
    "ValidationSettings",
    "check_heartbeat",
    "check_rungs",
    "check_seeds",
    "check_validation_samples",
]

OPTIMIZERS = ("tpe", "gp", "cmaes", "random", "qmc", "grid")
SPACE_KINDS = ("rho", "freeu", "rho+freeu", "steps", "rho+steps", "freeu+steps",
               "rho+freeu+steps")
"""What a search varies: the skip schedule ρ, FreeU's (b1, b2, s1, s2), the σ grid of the
steps (its exponent and ends, see ``skiptune.steps``), or several of them at once."""


def _check_range(name: str, bounds: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"{name} must be two numbers low,high; got {bounds!r}") from e
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or low >= high:
        raise ConfigurationError(
            f"{name} must be finite numbers with 0 ≤ low < high, got {low},{high}; "
            "pass e.g. 0.3,1.2"
        )
    return low, high


@dataclass(frozen=True)
class SearchSpace:
    """Where the search looks for a schedule.

    Args:
        rho_bottom: (low, high) of the deepest skip's factor.
        rho_top: (low, high) of the shallowest skip's factor, or one number to fix it.
        shapes: the interpolation shapes to try (``linear``, ``power``, ``cosine``).
        gamma: (low, high) of the ``power`` shape's exponent, searched on a log scale.
        grid_step: spacing of ρ values for the ``grid`` optimizer only.
        kind: ``"rho"`` (the skip schedule), ``"freeu"`` (FreeU's four factors, ρ = 1) or
            ``"rho+freeu"`` (both at once).
        freeu_b: (low, high) of FreeU's backbone factors b1 and b2.
        freeu_s: (low, high) of FreeU's skip factors s1 and s2. The default starts at 0.05, not
            0: diffusers turns FreeU off when a factor is 0 (skiptune measures the same), so
            s = 0 is the baseline again, not a filter that removes the lowest frequencies.
        freeu_known: FreeU values (b1, b2, s1, s2) queued as known points beside the
            baseline, e.g. the model family's recommended defaults; None: none.
        sigma_window: (low, high) σ range in which to search a window [σ_lo, σ_hi] outside
            which ρ is 1 (log scale); None (the default): ρ at every σ.
        steps_exponent: (low, high) of the σ grid's exponent (log scale; EDM uses 7).
        steps_sigma_min: (low, high) of the grid's last nonzero σ (log scale); None: resolved
            against the model by the search, from its σ_min up to 50·σ_min (≤ σ_max/10).
        steps_sigma_max: (low, high) of the grid's first σ (log scale); None: from the
            model's σ_max/4 up to its σ_max.
        steps_known: the sampler's own grid (exponent, σ_min, σ_max), measured first as the
            baseline; None: resolved against the model by the search.
    """

    rho_bottom: tuple[float, float] = (0.3, 1.2)
    rho_top: tuple[float, float] | float = (0.3, 1.2)
    shapes: tuple[str, ...] = SHAPES
    gamma: tuple[float, float] = (0.25, 4.0)
    grid_step: float = 0.05
    kind: str = "rho"
    freeu_b: tuple[float, float] = (0.8, 1.8)
    freeu_s: tuple[float, float] = (0.05, 1.2)
    freeu_known: tuple[float, float, float, float] | None = None
    sigma_window: tuple[float, float] | None = None
    steps_exponent: tuple[float, float] = (1.0, 16.0)
    steps_sigma_min: tuple[float, float] | None = None
    steps_sigma_max: tuple[float, float] | None = None
    steps_known: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho_bottom", _check_range("rho_bottom range", self.rho_bottom))
        if isinstance(self.rho_top, (int, float)):
            top = float(self.rho_top)
            if not math.isfinite(top) or top < 0:
                raise ConfigurationError(f"a fixed rho_top must be a finite number ≥ 0, got {top}")
            object.__setattr__(self, "rho_top", top)
        else:
            object.__setattr__(self, "rho_top", _check_range("rho_top range", self.rho_top))
        shapes = tuple(self.shapes)
        unknown = [s for s in shapes if s not in SHAPES]
        if not shapes or unknown or len(set(shapes)) != len(shapes):
            raise ConfigurationError(
                f"shapes must be distinct names among {', '.join(SHAPES)}, got {list(shapes)}; "
                "pass e.g. linear,cosine"
            )
        object.__setattr__(self, "shapes", shapes)
        low, high = _check_range("gamma range", self.gamma)
        if low <= 0:
            raise ConfigurationError(f"gamma range must be > 0 (log scale), got {low},{high}")
        object.__setattr__(self, "gamma", (low, high))
        if not math.isfinite(self.grid_step) or self.grid_step <= 0:
            raise ConfigurationError(f"grid_step must be > 0, got {self.grid_step}")
        if self.kind not in SPACE_KINDS:
            raise ConfigurationError(
                f"unknown search space {self.kind!r}; choose one of {', '.join(SPACE_KINDS)}"
            )
        object.__setattr__(self, "freeu_b", _check_range("FreeU b range", self.freeu_b))
        object.__setattr__(self, "freeu_s", _check_range("FreeU s range", self.freeu_s))
        if self.freeu_known is not None:
            known = tuple(float(v) for v in self.freeu_known)
            if len(known) != 4 or not all(math.isfinite(v) and v >= 0 for v in known):
                raise ConfigurationError(
                    f"freeu_known must be four numbers b1, b2, s1, s2 ≥ 0, got {self.freeu_known}"
                )
            object.__setattr__(self, "freeu_known", known)
        if self.sigma_window is not None:
            try:
                low, high = (float(v) for v in self.sigma_window)
            except (TypeError, ValueError) as e:
                raise ConfigurationError(
                    "space.sigma_window must be two numbers low,high; got "
                    f"{self.sigma_window!r}",
                    field="space.sigma_window",
                ) from e
            if not self.searches_rho:
                raise ConfigurationError(
                    "a σ window scales ρ; pass a space.kind with rho, e.g. rho or rho+steps",
                    field="space.kind")
            if low <= 0:
                raise ConfigurationError(
                    f"space.sigma_window is searched on a log scale and needs 0 < low, got {low:g}",
                    field="space.sigma_window",
                )
            object.__setattr__(self, "sigma_window", check_sigma_window(low, high))
        self._check_steps()

    def _check_steps(self) -> None:
        """Step-grid ranges: positive (log scale), and σ ranges that keep σ_min < σ_max."""
        for name in ("steps_exponent", "steps_sigma_min", "steps_sigma_max"):
            bounds = getattr(self, name)
            if bounds is not None:
                low, high = _check_range(f"{name} range", bounds)
                if low <= 0:
                    raise ConfigurationError(
                        f"{name} is searched on a log scale and needs "
                        f"0 < low, got {low:g}"
                    )
                object.__setattr__(self, name, (low, high))
        if (self.steps_sigma_min is not None and self.steps_sigma_max is not None
                and self.steps_sigma_min[1] >= self.steps_sigma_max[0]):
            raise ConfigurationError(
                f"the σ_min range {self.steps_sigma_min} must lie below the σ_max range "
                f"{self.steps_sigma_max}, so that every grid decreases"
            )
        if self.steps_known is not None:
            known = tuple(float(v) for v in self.steps_known)
            if len(known) != 3:
                raise ConfigurationError(
                    f"steps_known must be (exponent, σ_min, σ_max), got {self.steps_known}"
                )
            object.__setattr__(self, "steps_known", known)

    @property
    def parts(self) -> tuple[str, ...]:
        """The levers searched: some of ``rho``, ``freeu``, ``steps``."""
        return tuple(self.kind.split("+"))

    @property
    def searches_rho(self) -> bool:
        return "rho" in self.parts

    @property
    def searches_freeu(self) -> bool:
        return "freeu" in self.parts

    @property
    def searches_steps(self) -> bool:
        return "steps" in self.parts

    @property
    def rho_top_fixed(self) -> bool:
        return isinstance(self.rho_top, float)

    def rho_top_bounds(self) -> tuple[float, float]:
        """(low, high) of rho_top; low == high when it is fixed."""
        if isinstance(self.rho_top, float):
            return (self.rho_top, self.rho_top)
        return self.rho_top

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("rho_bottom", "gamma", "shapes", "freeu_b", "freeu_s"):
            data[name] = list(data[name])
        if not self.rho_top_fixed:
            data["rho_top"] = list(data["rho_top"])
        if self.freeu_known is not None:
            data["freeu_known"] = list(self.freeu_known)
        if self.kind == "rho":
            # A ρ-only space is stored as before FreeU existed, so older studies still resume.
            for name in ("kind", "freeu_b", "freeu_s", "freeu_known"):
                del data[name]
        if self.sigma_window is None:
            del data["sigma_window"]   # likewise: a space without σ windows, as before them
        else:
            data["sigma_window"] = list(self.sigma_window)
        steps = ("steps_exponent", "steps_sigma_min", "steps_sigma_max", "steps_known")
        for name in steps:             # likewise: a space without steps, as before them
            value = data.pop(name)
            if self.searches_steps:
                data[name] = None if value is None else list(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        top = data.get("rho_top", (0.3, 1.2))
        return cls(
            rho_bottom=tuple(data.get("rho_bottom", (0.3, 1.2))),
            rho_top=float(top) if isinstance(top, (int, float)) else tuple(top),
            shapes=tuple(data.get("shapes", SHAPES)),
            gamma=tuple(data.get("gamma", (0.25, 4.0))),
            grid_step=float(data.get("grid_step", 0.05)),
            kind=str(data.get("kind", "rho")),
            freeu_b=tuple(data.get("freeu_b", (0.8, 1.8))),
            freeu_s=tuple(data.get("freeu_s", (0.05, 1.2))),
            freeu_known=tuple(known) if (known := data.get("freeu_known")) is not None else None,
            sigma_window=tuple(window) if (window := data.get("sigma_window")) else None,
            steps_exponent=tuple(data.get("steps_exponent", (1.0, 16.0))),
            **{name: tuple(value) if (value := data.get(name)) is not None else None
               for name in ("steps_sigma_min", "steps_sigma_max", "steps_known")},
        )


@dataclass(frozen=True)
class ValidationSettings:
    """How a finished study is validated on fresh seeds.

    Args:
        top_k: distinct best schedules re-scored beside ρ = 1.
        num_samples: images per candidate; None: 2 × the last rung. Never below the last rung.
        resamples: paired bootstrap draws for the gain's interval.
        level: the interval's coverage.
        enabled: False skips validation (a later run without it validates the study).
        artifacts: the folder that keeps the validated trials' sample grids (Optuna
            artifacts); None: ``<db stem>.artifacts/`` beside a SQLite database, and no
            grids for a server database.
        grids: False stores no sample grids.
        max_blocks: the most seed blocks (of ``num_samples`` images each) a race gives the
            incumbent; races double its blocks from 1 (see ``skiptune.tuner.search.race``).
    """

    top_k: int = 1
    num_samples: int | None = None
    resamples: int = 200
    level: float = 0.95
    enabled: bool = True
    artifacts: str | None = None
    grids: bool = True
    max_blocks: int = 16

    def __post_init__(self) -> None:
        if not is_whole(self.max_blocks) or self.max_blocks < 1:
            raise ConfigurationError(
                f"validation.max_blocks must be a whole number ≥ 1, got {self.max_blocks!r}; "
                "pass e.g. 16", field="validation.max_blocks",
            )
        if not is_whole(self.top_k) or self.top_k < 1:
            raise ConfigurationError(
                f"validation.top_k must be a whole number ≥ 1, got {self.top_k!r}; pass e.g. 3",
                field="validation.top_k",
            )
        if self.num_samples is not None and (not is_whole(self.num_samples)
                                             or self.num_samples < 2):
            raise ConfigurationError(
                f"validation.num_samples must be a whole number ≥ 2, got {self.num_samples!r}",
                field="validation.num_samples",
            )
        if not is_whole(self.resamples) or self.resamples < 1:
            raise ConfigurationError(
                f"resamples must be a whole number ≥ 1, got {self.resamples!r}"
            )
        if not 0.0 < float(self.level) < 1.0:
            raise ConfigurationError(
                f"the interval's level must lie in (0, 1), got {self.level}"
            )

    def samples_for(self, last_rung: int) -> int:
        """N of a validation after trials measured at ``last_rung``; refuses one below it."""
        n = 2 * last_rung if self.num_samples is None else int(self.num_samples)
        if n < last_rung:
            raise ConfigurationError(
                f"validation.num_samples {n} is smaller than the last rung ({last_rung}): "
                "validation must measure at least as many images as a trial; pass "
                f"validation.num_samples {2 * last_rung}",
                field="validation.num_samples",
            )
        return n


# FID-50k, the field's largest standard N: a rung above it is almost surely a typo (10¹⁰
# samples run for years and their features need terabytes), so it takes an explicit opt-in.
MAX_RUNG = 50_000


def check_rungs(rungs: Sequence[int] | None, *, allowed: bool) -> None:
    """Refuse a rung above :data:`MAX_RUNG` samples unless ``allowed``."""
    largest = max(rungs or (0,), default=0)
    if isinstance(largest, int) and largest > MAX_RUNG and not allowed:
        raise ConfigurationError(
            f"a rung of {largest:,} samples is above {MAX_RUNG:,} (FID-50k, the usual "
            "largest); it would sample for a very long time and hold every image's features "
            "in memory: pass e.g. objective.rungs 64,256, or allow_large_rungs=True if you mean it",
            field=("objective.rungs", "allow_large_rungs"),
        )


def check_self_reference_samples(reference: str | None, *, allowed: bool) -> None:
    """Refuse a self-reference (``self:SAMPLER:NFE:N``) of more than :data:`MAX_RUNG` samples
    unless ``allowed``: it samples N images before the first trial, like a rung of N."""
    if not is_self_reference(reference):
        return
    count = parse_self_reference(reference).num_samples
    if count is not None and count > MAX_RUNG and not allowed:
        raise ConfigurationError(
            f"reference {reference[:60]!r} asks for {count:,} samples, above {MAX_RUNG:,} "
            "(FID-50k, the usual largest); it would sample for a very long time before the "
            "first trial: pass e.g. objective.reference self:heun:79:2048, or "
            "allow_large_rungs=True if you mean it",
            field=("objective.reference", "allow_large_rungs"),
        )


def check_validation_samples(num_samples: int, *, allowed: bool) -> None:
    """Refuse a validation of more than :data:`MAX_RUNG` images unless ``allowed``: its
    features are held in memory at once, after every trial has run."""
    if num_samples > MAX_RUNG and not allowed:
        raise ConfigurationError(
            f"validation.num_samples {num_samples:,} is above {MAX_RUNG:,} images (FID-50k, the "
            "usual largest); their features would not fit in memory once the trials have run: "
            "pass e.g. validation.num_samples 1024, or allow_large_rungs=True if you mean it",
            field=("validation.num_samples", "allow_large_rungs"),
        )


def check_seeds(seed: int, *, count: int) -> None:
    """Refuse a ``seed`` whose ``count`` samples (trials, then validation) pass the largest
    seed a generator takes, :data:`~skiptune.sampling.MAX_SEED` (2**63 − 1)."""
    if seed + count > MAX_SEED:
        raise ConfigurationError(
            f"seed {seed} is too large: the search's {count:,} samples take seeds {seed} "
            f"… {seed + count - 1}, and seeds stop at 2**63 − 1; pass a seed below "
            f"{MAX_SEED - count + 1}",
            field="seed",
        )


def check_heartbeat(heartbeat_interval: int, grace_period: int) -> None:
    """Refuse a grace period under two heartbeats: live trials would be failed as stale."""
    if grace_period < 2 * heartbeat_interval:
        raise ConfigurationError(
            f"grace_period {grace_period} is under two heartbeats (heartbeat_interval "
            f"{heartbeat_interval}): a running trial would be declared stale between its "
            f"heartbeats and run twice; pass grace_period {max(3 * heartbeat_interval, 30)} or "
            "more",
            field=("grace_period", "heartbeat_interval"),
        )


def _check_search(*, trials: int, optimizer: str, space: SearchSpace) -> None:
    """What a search's total, optimizer and space must satisfy together."""
    if optimizer not in OPTIMIZERS:
        raise ConfigurationError(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    if not is_whole(trials) or trials < 1:
        raise ConfigurationError(f"trials must be a whole number ≥ 1, got {trials!r}")
    if optimizer != "grid":
        return
    if space.kind != "rho":
        raise ConfigurationError(
            "the grid optimizer searches ρ only; pass space.kind rho or another optimizer "
            "(tpe, gp, cmaes, random) for FreeU",
            field="space.kind",
        )
    if space.sigma_window is not None:
        raise ConfigurationError(
            "the grid optimizer searches ρ only, not a σ window; pass another optimizer"
        )
    if "power" in space.shapes:
        raise ConfigurationError(
            "the grid optimizer cannot search the power shape's continuous exponent; pass "
            "shapes without power (e.g. space.shapes linear,cosine) or another optimizer",
            field="space.shapes",
        )


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """What a user asks of a search: frozen, and validated when it is built.

    The command line builds one from its options; a script builds one the same way and
    passes it to :func:`skiptune.search`. Each (sampler, budget) becomes one study, whose
    :class:`StudyConfig` (these settings at that sampler and budget, resolved against the
    model) is stored with it and compared on every resume.

    Args:
        nfe: the step budgets in denoiser calls per image, one study each per sampler.
        sampler: the σ-space sampler's name, or several (a tuple) to search side by side;
            ``best``, ``front`` and ``export`` then name the best sampler per budget. None:
            the model's own (``TunableModel.default_sampler``, ``consistency`` for a
            distilled model), else ``heun``; :func:`skiptune.search` resolves it on loading.
        trials: the total of finished trials each study should reach.
        optimizer: one of ``OPTIMIZERS``.
        space: where the search looks.
        objective: how a trial is measured (metric, features, reference, rungs...).
        seed: noise seed of sample 0 (common random numbers) and the optimizer's seed.
        group: the study group, the first part of the study names; None: named after the
            model.
        pruning: stop clearly bad schedules after a rung (successive halving).
        validation: how a study at its total is validated on fresh seeds.
        parallel_candidates: trials asked at once and sampled in one batch (per-sample ρ).
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without one before a trial is failed and re-queued.
        allow_large_rungs: accept a rung above :data:`MAX_RUNG` samples, on purpose.
    """

    nfe: int | Sequence[int]
    sampler: str | Sequence[str] | None = None
    trials: int = 10
    optimizer: str = "tpe"
    space: SearchSpace = field(default_factory=SearchSpace)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    seed: int = 0
    group: str | None = None
    pruning: bool = True
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    parallel_candidates: int = 1
    heartbeat_interval: int = 10
    grace_period: int = 30
    allow_large_rungs: bool = False

    @property
    def budgets(self) -> tuple[int, ...]:
        """The step budgets, one study each, in the order given (``nfe`` as a tuple)."""
        return tuple(self.nfe) if isinstance(self.nfe, Sequence) else (self.nfe,)

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers, one study each per budget, in the order given (``heun`` for None:
        see :meth:`for_model` for a model's own)."""
        if self.sampler is None:
            return (DEFAULT_SAMPLER,)
        return (self.sampler,) if isinstance(self.sampler, str) else tuple(self.sampler)

    def for_model(self, default_sampler: str | None) -> SearchConfig:
        """These settings with ``sampler`` None resolved to a model's own default sampler."""
        if self.sampler is not None:
            return self
        return replace(self, sampler=default_sampler or DEFAULT_SAMPLER)

    def __post_init__(self) -> None:
        given = tuple(self.nfe) if isinstance(self.nfe, Sequence) else (self.nfe,)
        budgets = tuple(int(n) for n in given if is_whole(n) and n >= 1)
        if not given or len(budgets) != len(given) or len(set(budgets)) != len(budgets):
            raise ConfigurationError(
                f"pass one or more distinct step budgets ≥ 1, got {list(given)}"
            )
        object.__setattr__(self, "nfe", budgets)
        samplers = self.samplers
        if not samplers or len(set(samplers)) != len(samplers):
            raise ConfigurationError(
                f"pass one or more distinct samplers, e.g. heun, got {list(samplers)}"
            )
        if self.sampler is not None:     # None is checked once resolved (for_model)
            object.__setattr__(self, "sampler", samplers[0] if len(samplers) == 1 else samplers)
            for sampler in samplers:
                for budget in self.budgets:
                    steps_for_nfe(sampler, budget)   # an unknown sampler or unreachable budget
        _check_search(trials=self.trials, optimizer=self.optimizer, space=self.space)
        if isinstance(self.objective, ObjectiveConfig):
            raise ConfigurationError(
                "the search sets the sampler, NFE and seed of each study: pass "
                "ObjectiveSettings(...) as objective, not an ObjectiveConfig"
            )
        if not is_whole(self.seed) or self.seed < 0:
            raise ConfigurationError(f"seed must be a whole number ≥ 0, got {self.seed!r}")
        if self.group is not None:
            check_group(self.group)
        if not is_whole(self.parallel_candidates) or self.parallel_candidates < 1:
            raise ConfigurationError(
                "parallel_candidates must be a whole number ≥ 1, got "
                f"{self.parallel_candidates!r}",
                field="parallel_candidates",
            )
        check_heartbeat(self.heartbeat_interval, self.grace_period)
        check_rungs(self.objective.rungs, allowed=self.allow_large_rungs)
        check_self_reference_samples(self.objective.reference, allowed=self.allow_large_rungs)
        # Everything a search will sample is checked here, before a database is touched: a
        # mistake found after the trials (or after the study was created) loses their work.
        last = self.objective.num_samples
        validated = 0
        if self.validation.enabled:
            validated = self.validation.samples_for(last)
            check_validation_samples(validated, allowed=self.allow_large_rungs)
        # Races measure at most validation.max_blocks seed blocks of `validated` images.
        check_seeds(self.seed, count=last + validated * self.validation.max_blocks)


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Everything that defines one study: which model, how it is measured, how it is searched.

    A :class:`SearchConfig` at one budget, resolved against the model (``plan_study`` in
    ``tuner/_search.py``): the weights' fingerprint, the objective with the model's defaults
    filled in, and the built objective's identity. Stored with the study (Optuna study user
    attribute ``skiptune_config``) and compared on every resume: any difference but
    ``trials``, ``model`` (the path; the weights are identified by ``model_fingerprint``),
    ``pruning`` and the batch size is refused.

    Args:
        model: the model source as given (path or ``module:attr``).
        model_fingerprint: SHA-256 of the weights.
        objective: the proxy objective, which holds the sampler, NFE and seed.
        objective_identity: the built objective's identity (config, features, reference).
        trials: the total of finished trials the study should reach.
        optimizer: one of ``OPTIMIZERS``.
        space: the search space.
        group: the study group, the first part of the study name.
        pruning: stop clearly bad schedules after a rung (successive halving).
    """

    model: str
    model_fingerprint: str
    objective: ObjectiveConfig
    objective_identity: dict[str, Any]
    trials: int = 10
    optimizer: str = "tpe"
    space: SearchSpace = field(default_factory=SearchSpace)
    group: str = "default"
    pruning: bool = True

    def __post_init__(self) -> None:
        _check_search(trials=self.trials, optimizer=self.optimizer, space=self.space)
        check_group(self.group)

    @property
    def sampler(self) -> str:
        return self.objective.sampler

    @property
    def nfe(self) -> int:
        return self.objective.nfe

    @property
    def seed(self) -> int:
        return self.objective.seed

    @property
    def study_name(self) -> str:
        return study_name(group=self.group, sampler=self.sampler, nfe=self.nfe)

    @property
    def rungs(self) -> tuple[int, ...]:
        return self.objective.rungs

    @property
    def num_samples(self) -> int:
        """N of the final rung: the number of images every complete trial is measured on."""
        return self.objective.num_samples

    @property
    def metric(self) -> str:
        return self.objective.metric

    def to_dict(self) -> dict[str, Any]:
        """The stored form; sampler, NFE and seed also at the top, as every study stores them."""
        return {
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "sampler": self.sampler,
            "nfe": self.nfe,
            "objective": self.objective.to_dict(),
            "objective_identity": dict(self.objective_identity),
            "trials": self.trials,
            "optimizer": self.optimizer,
            "space": self.space.to_dict(),
            "seed": self.seed,
            "group": self.group,
            "pruning": self.pruning,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Read :meth:`to_dict`'s output back, as stored by any skiptune version."""
        return cls(
            model=str(data["model"]),
            model_fingerprint=str(data["model_fingerprint"]),
            objective=ObjectiveConfig.from_dict(data["objective"]),
            objective_identity=dict(data.get("objective_identity", {})),
            trials=int(data.get("trials", 30)),
            optimizer=str(data.get("optimizer", "tpe")),
            space=SearchSpace.from_dict(data.get("space", {})),
            group=str(data.get("group", "default")),
            pruning=bool(data.get("pruning", True)),
        )
