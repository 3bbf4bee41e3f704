"""The export file format: one searched schedule as JSON, with how it was measured.

``skiptune export`` (``skiptune.tuner.export_schedule``) writes it from a database;
``load_exported`` reads it back, and ``skiptune sample --from`` applies it. The file
carries ``format`` and ``format_version``: a later format is refused, not misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiptune._files import read_text
from skiptune._version import skiptune_version
from skiptune.errors import ConfigurationError, SkiptuneError
from skiptune.schedule import RhoSchedule

if TYPE_CHECKING:
    from skiptune.models import TunableModel

__all__ = [
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

    schedule: RhoSchedule
    nfe: int
    sampler: str
    value: float
    baseline_value: float | None
    metric: str
    num_samples: int
    seed: int
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
            "skiptune_version": skiptune_version(),
        }

def load_exported(
    path: str | Path,
    *,
    model: TunableModel | None = None,
    allow_other_weights: bool = False,
) -> ExportedSchedule:
    """Read a file written by ``skiptune export``; with ``model``, check it was searched on it.

    Raises ConfigurationError for a file that is not an export, or (unless
    ``allow_other_weights``) one searched on other weights.
    """
    target = Path(path)
    text = read_text(target, what="--from file", fix="pass a file written by skiptune export")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"{str(target)!r} is not JSON ({e.msg}); pass a file written by "
                                 "skiptune export") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ConfigurationError(
            f"{str(target)!r} is not a skiptune schedule export; write one with skiptune export"
        )
    version = data.get("format_version", 0)
    if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION:
        raise ConfigurationError(
            f"{str(target)!r} has export format {version!r}, newer than this "
            f"skiptune reads ({EXPORT_FORMAT_VERSION}); upgrade skiptune"
        )
    try:
        exported = ExportedSchedule(
            schedule=RhoSchedule.from_dict(data["schedule"]),
            nfe=int(data["nfe"]),
            sampler=str(data["sampler"]),
            value=float(data["value"]),
            baseline_value=(
                None if data.get("baseline_value") is None else float(data["baseline_value"])
            ),
            metric=str(data["metric"]),
            num_samples=int(data["num_samples"]),
            seed=int(data["seed"]),
            model_fingerprint=str(data["model_fingerprint"]),
            study=str(data.get("study", "")),
            schedule_exponent=data.get("schedule_exponent"),
            rho_factors=data.get("rho_factors"),
            validation=data.get("validation"),
            sigmas=None if data.get("sigmas") is None else [float(v) for v in data["sigmas"]],
        )
    except (KeyError, TypeError, ValueError, OverflowError, SkiptuneError) as e:
        raise ConfigurationError(
            f"{str(target)!r} lacks or mangles field {' '.join(str(e).split())[:200]}; export "
            "it again"
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
            "allow_other_weights=True to use it anyway"
        )
