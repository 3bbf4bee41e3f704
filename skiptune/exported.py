"""The export file format: one searched schedule as JSON, with how it was measured.

``skiptune export`` (``skiptune.tuner.export_schedule``) writes it from a database;
``load_exported`` reads it back, and ``skiptune sample --from`` applies it. The file
carries ``format`` and ``format_version``: a later format is refused, not misread.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiptune._files import read_json
from skiptune._version import skiptune_version
from skiptune.errors import ConfigurationError, SkiptuneError
from skiptune.schedule import TuningSchedule

if TYPE_CHECKING:
    from skiptune.models import TunableModel

__all__ = [
    "EXPORT_FIELDS",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "ExportedSchedule",
    "check_weights",
    "load_exported",
]

EXPORT_FORMAT = "skiptune-schedule"
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportedSchedule:
    """A schedule written by ``skiptune export``: what it is and how it was measured."""

    schedule: TuningSchedule
    nfe: int
    sampler: str
    value: float
    baseline_value: float | None
    metric: str
    num_samples: int                # N behind value and baseline_value (the validation's once
    seed: int                       # validated); image j has noise seed seed + j
    model_fingerprint: str
    study: str
    schedule_exponent: float | None = None
    # ρ of each skip site by name, bottom → top, when the export was written with the model.
    rho_factors: dict[str, float] | None = None
    # How ``value`` and ``baseline_value`` were validated on fresh seeds (N, seed, gain and
    # its interval, the search's own value); None: they are the search's measurements.
    validation: dict[str, Any] | None = None
    # The σ grid the sampler walked, descending and ending in 0 (float32 values, as sampled):
    # for an EDM-style loop or a diffusers scheduler's ``sigmas=``. None: not known (a study
    # on the sampler's own grid exported without the model).
    sigmas: list[float] | None = None
    # Which schedule was picked and why, in words (and whether its gain is established).
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        freeu = self.schedule.freeu
        return {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "schedule": self.schedule.to_dict(),
            # What a diffusers user needs without skiptune: pipe.enable_freeu(**enable_freeu).
            "enable_freeu": None if freeu is None or freeu.is_neutral else freeu.to_dict(),
            "rho_factors": self.rho_factors,
            "nfe": self.nfe,
            "sampler": self.sampler,
            "schedule_exponent": self.schedule_exponent,
            "sigmas": self.sigmas,
            "value": self.value,
            "baseline_value": self.baseline_value,
            "metric": self.metric,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "model_fingerprint": self.model_fingerprint,
            "study": self.study,
            "validated": self.validation is not None,
            "validation": self.validation,
            "why": self.why,
            "skiptune_version": skiptune_version(),
        }

    def to_json(self) -> str:
        """The export file's text: :meth:`to_dict` as indented JSON, ending in a newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

# -- the format's one schema --------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int: never a number here.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_sampler(value: Any) -> bool:
    from skiptune.sampling.solvers import SAMPLERS  # lazily: sampling imports this module

    return isinstance(value, str) and value in SAMPLERS


def _is_freeu(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"b1", "b2", "s1", "s2"}
            and all(map(_is_number, value.values())))


def _is_factor_map(value: Any) -> bool:
    return isinstance(value, dict) and all(map(_is_number, value.values()))


def _or_null(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


@dataclass(frozen=True)
class _Field:
    """One field of the format: whether it must be present, what it holds, a test of it."""

    required: bool
    expected: str
    check: Callable[[Any], bool]


def _is_step_grid(value: Any) -> bool:
    keys = {"schedule_exponent", "sigma_min", "sigma_max"}
    return isinstance(value, dict) and set(value) == keys and all(
        _is_number(value[k]) and value[k] > 0 for k in keys
    )


_SCHEDULE_FIELDS: dict[str, _Field] = {
    "rho_bottom": _Field(True, "a finite number", _is_number),
    "rho_top": _Field(False, "a finite number", _is_number),
    "shape": _Field(False, "a schedule shape name (a string)", _is_text),
    "gamma": _Field(False, "a finite number", _is_number),
    "freeu": _Field(False, "null or an object of four numbers b1, b2, s1, s2",
                    _or_null(_is_freeu)),
    "sigma_lo": _Field(False, "null or a finite number (σ)", _or_null(_is_number)),
    "sigma_hi": _Field(False, "null or a finite number (σ)", _or_null(_is_number)),
    "steps": _Field(False, "null or an object of the σ grid's schedule_exponent, sigma_min and "
                    "sigma_max (numbers)", _or_null(_is_step_grid)),
}



def _is_sigma_list(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) >= 2
        and all(_is_number(v) and v >= 0 for v in value)
        and all(a > b for a, b in itertools.pairwise(value)) and value[-1] == 0
    )


EXPORT_FIELDS: dict[str, _Field] = {
    "format": _Field(True, f"the string {EXPORT_FORMAT!r}", lambda v: v == EXPORT_FORMAT),
    "format_version": _Field(False, f"a whole number 1..{EXPORT_FORMAT_VERSION}",
                             lambda v: _is_whole(v) and 1 <= v <= EXPORT_FORMAT_VERSION),
    "schedule": _Field(True, "an object with rho_bottom", lambda v: isinstance(v, dict)),
    "enable_freeu": _Field(False, "null or an object of four numbers b1, b2, s1, s2",
                           _or_null(_is_freeu)),
    "rho_factors": _Field(False, "null or an object of skip-site names to numbers",
                          _or_null(_is_factor_map)),
    "nfe": _Field(True, "a whole number ≥ 1", lambda v: _is_whole(v) and v >= 1),
    "sampler": _Field(True, "a sampler name (skiptune.sampling.SAMPLERS)", _is_sampler),
    "schedule_exponent": _Field(False, "null or a finite number > 0",
                                _or_null(lambda v: _is_number(v) and v > 0)),
    "value": _Field(True, "a finite number", _is_number),
    "baseline_value": _Field(False, "null or a finite number", _or_null(_is_number)),
    "metric": _Field(True, "a metric name (a string)", _is_text),
    "num_samples": _Field(True, "a whole number ≥ 1", lambda v: _is_whole(v) and v >= 1),
    "seed": _Field(True, "a whole number ≥ 0", lambda v: _is_whole(v) and v >= 0),
    "model_fingerprint": _Field(True, "a fingerprint (a string)", _is_text),
    "study": _Field(False, "a string", lambda v: isinstance(v, str)),
    "validated": _Field(False, "true or false", lambda v: isinstance(v, bool)),
    "validation": _Field(False, "null or an object", _or_null(lambda v: isinstance(v, dict))),
    "skiptune_version": _Field(False, "a string", lambda v: isinstance(v, str)),
    "why": _Field(False, "null or a string", _or_null(lambda v: isinstance(v, str))),
    "sigmas": _Field(False, "null or a list of finite numbers ≥ 0, descending, ending in 0",
                     _or_null(_is_sigma_list)),
}
"""Every field an export file may hold (``format_version`` 1), what it must hold, and
whether it must be present; anything else is refused, never coerced."""


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", str: "a string", dict: "an object", list: "an array",
            type(None): "null"}.get(type(value), "a number")
    return f"{kind} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fields(
    data: Mapping[str, Any], fields: Mapping[str, _Field], *, prefix: str = ""
) -> str | None:
    """What is wrong with ``data`` against ``fields`` (one phrase naming the field), or None."""
    for name in data:
        if name not in fields:
            return f"has unknown field {prefix + name!r} (fields: {', '.join(fields)})"
    for name, field in fields.items():
        if name not in data:
            if field.required:
                return f"lacks field {prefix + name!r} ({field.expected})"
            continue
        if not field.check(data[name]):
            return (f"has field {prefix + name!r} = {_describe(data[name])}; it must be "
                    f"{field.expected}")
    return None


def _schema_problem(data: Mapping[str, Any]) -> str | None:
    problem = _check_fields(data, EXPORT_FIELDS)
    if problem is None:
        problem = _check_fields(data["schedule"], _SCHEDULE_FIELDS, prefix="schedule.")
    if problem is None and "validated" in data and data["validated"] != (
        data.get("validation") is not None
    ):
        problem = "has field 'validated' that contradicts field 'validation'"
    if problem is None and data.get("sigmas") is not None:
        problem = _grid_problem(data["sigmas"], sampler=data["sampler"], nfe=data["nfe"])
    return problem


def _grid_problem(sigmas: list[Any], *, sampler: str, nfe: int) -> str | None:
    """Why ``sigmas`` is not the σ list ``sampler`` walks at ``nfe`` calls, or None: it must
    hold one value per step and the final 0."""
    from skiptune.sampling.solvers import steps_for_nfe  # lazily: sampling imports this module

    try:
        steps = steps_for_nfe(sampler, nfe)
    except ConfigurationError as e:
        return f"has field 'nfe' = {nfe}, a budget {sampler} cannot meet ({e})"
    if len(sigmas) != steps + 1:
        return (f"has field 'sigmas' with {len(sigmas)} values, but {sampler} at {nfe} NFE "
                f"takes {steps} steps: {steps + 1} values, the last 0")
    return None


def load_exported(
    path: str | Path,
    *,
    model: TunableModel | None = None,
    allow_other_weights: bool = False,
) -> ExportedSchedule:
    """Read a file written by ``skiptune export``; with ``model``, check it was searched on it.

    Every field is checked against :data:`EXPORT_FIELDS` (types, ranges, no unknown field)
    before anything is built: a value of the wrong type is refused with the field named,
    never converted. JSON limits (size, depth, number length) are those of
    :func:`skiptune._files.read_json`.

    Raises ConfigurationError for a file that is not an export or breaks the schema, or
    (unless ``allow_other_weights``) one searched on other weights; FileAccessError for a
    file that cannot be read or is not acceptable JSON.
    """
    target = Path(path)
    fix = "pass a file written by skiptune export"
    data = read_json(target, what="export file", fix=fix)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ConfigurationError(
            f"{str(target)!r} is not a skiptune schedule export; write one with skiptune export"
        )
    version = data.get("format_version", 0)
    if _is_whole(version) and version > EXPORT_FORMAT_VERSION:
        raise ConfigurationError(
            f"{str(target)!r} has export format {version!r}, newer than this "
            f"skiptune reads ({EXPORT_FORMAT_VERSION}); upgrade skiptune"
        )
    problem = _schema_problem(data)
    if problem is not None:
        raise ConfigurationError(f"{str(target)!r} {problem}; export it again")
    try:
        exported = ExportedSchedule(
            schedule=TuningSchedule.from_dict(data["schedule"]),
            nfe=data["nfe"],
            sampler=data["sampler"],
            value=float(data["value"]),
            baseline_value=(
                None if data.get("baseline_value") is None else float(data["baseline_value"])
            ),
            metric=data["metric"],
            num_samples=data["num_samples"],
            seed=data["seed"],
            model_fingerprint=data["model_fingerprint"],
            study=data.get("study", ""),
            schedule_exponent=(
                None if data.get("schedule_exponent") is None
                else float(data["schedule_exponent"])
            ),
            rho_factors=data.get("rho_factors"),
            validation=data.get("validation"),
            sigmas=None if data.get("sigmas") is None else [float(v) for v in data["sigmas"]],
            why=data.get("why"),
        )
    except SkiptuneError as e:   # a value out of range (ρ < 0, a σ window upside down...)
        raise ConfigurationError(
            f"{str(target)!r} has an invalid schedule ({' '.join(str(e).split())[:200]}); "
            "export it again"
        ) from None
    if model is not None:
        check_weights(exported.model_fingerprint, model, allow_other_weights, where=str(target))
    return exported


def check_weights(
    fingerprint: str, model: TunableModel, allow_other_weights: bool, *, where: str
) -> None:
    """Refuse a schedule searched on weights with another ``fingerprint`` than ``model``'s,
    unless ``allow_other_weights``; ``where`` names the study or file in the message."""
    if fingerprint != model.fingerprint and not allow_other_weights:
        raise ConfigurationError(
            f"{where} was searched on other weights (fingerprint {fingerprint[:12]}…) than "
            f"this model's ({model.fingerprint[:12]}…); search this model, or pass "
            "allow_other_weights=True to use it anyway",
            field="allow_other_weights",
        )
