"""The one resolved configuration of a search: built at the edge, stored, compared on resume."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skiptune.errors import ConfigurationError
from skiptune.schedule import SHAPES, check_sigma_window

__all__ = [
    "OPTIMIZERS",
    "SPACE_KINDS",
    "SearchConfig",
    "SearchSpace",
    "comparison_key",
    "config_differences",
    "default_group",
    "study_name",
]

OPTIMIZERS = ("tpe", "gp", "cmaes", "random", "grid")
SPACE_KINDS = ("rho", "freeu", "rho+freeu")
"""What a search varies: the skip schedule ρ, FreeU's (b1, b2, s1, s2), or both."""

# Fields that may change between runs of one study: the total to reach, where the weights
# file lies now (the fingerprint is what identifies them), and throughput knobs that do not
# change the measured values.
_MAY_DIFFER = frozenset({"trials", "model", "pruning", "objective.batch_size"})
_NOT_IDENTITY_KEYS = frozenset({"batch_size", "device"})


def _check_range(name: str, bounds: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be two numbers low,high; got {bounds!r}") from None
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
        freeu_s: (low, high) of FreeU's skip factors s1 and s2.
        freeu_known: FreeU values (b1, b2, s1, s2) queued as known points beside the
            baseline, e.g. the model family's recommended defaults; None: none.
        sigma_window: (low, high) σ range in which to search a window [σ_lo, σ_hi] outside
            which ρ is 1 (log scale); None (the default): ρ at every σ.
    """

    rho_bottom: tuple[float, float] = (0.3, 1.2)
    rho_top: tuple[float, float] | float = (0.3, 1.2)
    shapes: tuple[str, ...] = SHAPES
    gamma: tuple[float, float] = (0.25, 4.0)
    grid_step: float = 0.05
    kind: str = "rho"
    freeu_b: tuple[float, float] = (0.8, 1.8)
    freeu_s: tuple[float, float] = (0.0, 1.2)
    freeu_known: tuple[float, float, float, float] | None = None
    sigma_window: tuple[float, float] | None = None

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
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"--sigma-window must be two numbers low,high; got {self.sigma_window!r}"
                ) from None
            if not self.searches_rho:
                raise ConfigurationError("a σ window scales ρ; pass --space rho or rho+freeu")
            if low <= 0:
                raise ConfigurationError(
                    f"--sigma-window is searched on a log scale and needs 0 < low, got {low:g}"
                )
            object.__setattr__(self, "sigma_window", check_sigma_window(low, high))

    @property
    def searches_rho(self) -> bool:
        return self.kind in ("rho", "rho+freeu")

    @property
    def searches_freeu(self) -> bool:
        return self.kind in ("freeu", "rho+freeu")

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
            freeu_s=tuple(data.get("freeu_s", (0.0, 1.2))),
            freeu_known=tuple(known) if (known := data.get("freeu_known")) is not None else None,
            sigma_window=tuple(window) if (window := data.get("sigma_window")) else None,
        )


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines one study: which model, how it is measured, how it is searched.

    Built by ``plan_search`` (``tuner/_search.py``) from the model and the user's options,
    stored with the study (Optuna study user attribute ``skiptune_config``) and compared on
    every resume: any difference but ``trials``, ``model`` (the path; the weights are
    identified by ``model_fingerprint``), ``pruning`` and the batch size is refused.

    Args:
        model: the model source as given (path or ``module:attr``).
        model_fingerprint: SHA-256 of the weights.
        sampler: the σ-space sampler's name.
        nfe: denoiser calls per image.
        objective: ``ObjectiveConfig.to_dict()`` of the proxy objective (same sampler, NFE, seed).
        objective_identity: the built objective's identity (config, features, reference).
        trials: the total of finished trials the study should reach.
        optimizer: one of ``OPTIMIZERS``.
        space: the search space.
        seed: noise seed of sample 0 (common random numbers) and the optimizer's seed.
        group: the study group, the first part of the study name.
        pruning: stop clearly bad schedules after a rung (successive halving).
    """

    model: str
    model_fingerprint: str
    sampler: str
    nfe: int
    objective: dict[str, Any]
    objective_identity: dict[str, Any]
    trials: int = 30
    optimizer: str = "tpe"
    space: SearchSpace = field(default_factory=SearchSpace)
    seed: int = 0
    group: str = "default"
    pruning: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigurationError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigurationError(f"trials must be a whole number ≥ 1, got {self.trials!r}")
        if self.optimizer == "grid" and self.space.kind != "rho":
            raise ConfigurationError(
                "the grid optimizer searches ρ only; pass --space rho or another optimizer "
                "(tpe, gp, cmaes, random) for FreeU"
            )
        if self.optimizer == "grid" and self.space.sigma_window is not None:
            raise ConfigurationError(
                "the grid optimizer searches ρ only, not a σ window; pass another optimizer"
            )
        if self.optimizer == "grid" and "power" in self.space.shapes:
            raise ConfigurationError(
                "the grid optimizer cannot search the power shape's continuous exponent; pass "
                "shapes without power (e.g. --shapes linear,cosine) or another optimizer"
            )
        _check_group(self.group)

    @property
    def study_name(self) -> str:
        return study_name(group=self.group, sampler=self.sampler, nfe=self.nfe)

    @property
    def rungs(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.objective.get("rungs", ()))

    @property
    def num_samples(self) -> int:
        """N of the final rung: the number of images every complete trial is measured on."""
        return self.rungs[-1] if self.rungs else 0

    @property
    def metric(self) -> str:
        return str(self.objective.get("metric", ""))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["space"] = self.space.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        values = dict(data)
        values["space"] = SearchSpace.from_dict(values.get("space", {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def _check_group(group: str) -> None:
    if not isinstance(group, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", group):
        raise ConfigurationError(
            f"study group {group!r} must be 1–64 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit; pass e.g. --study mymodel"
        )


def default_group(model: str | Path) -> str:
    """The study group named after the model: the file or folder stem, or an adapter's module.

    ``my_unets:adapter`` and ``pkg.my_unets:build`` both give ``my_unets``: the attribute is
    usually a generic word ("adapter", "load") that would put every adapter in one group.
    """
    text = str(model).rstrip("/\\")
    if ":" in text and not Path(text).exists():
        name = text.rsplit(":", 1)[0].rsplit(".", 1)[-1]
    else:
        name = Path(text).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[:64]
    return name or "default"


def study_name(*, group: str, sampler: str, nfe: int) -> str:
    """The study's name, ``skiptune-<group>-<sampler>-nfe<NFE>``.

    Deliberately no hash of the configuration in it: rerunning with other weights, another
    metric or other seeds must meet the stored study and be refused by the comparison, not
    start a fresh study silently. ``--study`` picks another group for a separate study.
    """
    return f"skiptune-{group}-{sampler}-nfe{nfe}"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(data, (list, tuple)):
        return {prefix[:-1]: json.dumps(list(data), sort_keys=True, default=str)}
    return {prefix[:-1]: data}


def _ignored(name: str) -> bool:
    if name in _MAY_DIFFER:
        return True
    return name.startswith("objective_identity.") and name.rsplit(".", 1)[-1] in _NOT_IDENTITY_KEYS


def config_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields whose values differ, e.g. ``objective.metric``, sorted.

    Fields that may change between runs of a study (``trials``, ``model``, ``pruning``, batch
    size) are left out. Numbers compare by value (1 == 1.0).
    """
    old, new = _flatten(stored), _flatten(requested)
    names = sorted(set(old) | set(new))
    absent = "<absent>"
    return [n for n in names if not _ignored(n) and old.get(n, absent) != new.get(n, absent)]


def describe_differences(
    stored: Mapping[str, Any], requested: Mapping[str, Any], names: Sequence[str], *, limit: int = 4
) -> str:
    """``field: stored → requested`` for the first few differing fields, in one line."""
    old, new = _flatten(stored), _flatten(requested)

    def show(value: Any) -> str:
        text = "<absent>" if value is None else str(value)
        return text if len(text) <= 24 else text[:10] + "…" + text[-6:]

    parts = [f"{n}: {show(old.get(n))} → {show(new.get(n))}" for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(parts) + more


def comparison_key(
    identity: Mapping[str, Any],
    *,
    num_samples: int,
    seed: int,
    validation: tuple[int, int] | None = None,   # (N, seed) of a validation on fresh seeds
) -> str:
    """Short hash equal only for measurements that may be compared across step budgets.

    The objective identity without the sampler, NFE, rungs and batch size, plus the final N
    and the noise seed: the same metric, features and reference at the same N and seeds.
    Validated values are measured at the validation's N and seeds, so those join the key.
    """

    def strip(data: Any) -> Any:
        if isinstance(data, Mapping):
            return {
                k: strip(v)
                for k, v in data.items()
                if k not in {"sampler", "nfe", "rungs", "batch_size", "device"}
            }
        if isinstance(data, (list, tuple)):
            return [strip(v) for v in data]
        return data

    payload: dict[str, Any] = {
        "identity": strip(identity), "num_samples": num_samples, "seed": seed
    }
    if validation is not None:
        payload["validation"] = list(validation)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
