"""skiptune: automatic Skip-Tuning for diffusion U-Nets.

Skip-Tuning (Ma et al., ICML 2024) scales a U-Net's skip connections by factors ρ,
interpolated from ``rho_bottom`` at the deepest skip to ``rho_top`` at the shallowest,
which sharply improves sampling at few function evaluations (NFE). skiptune searches ρ
automatically and applies it in one call::

    model = skiptune.load_model("ckpt.pt")
    with skiptune.skip_tuning(model, skiptune.TuningSchedule(rho_bottom=0.6)):
        images = skiptune.sample(model, skiptune.initial_noise(16, model.image_shape, seed=0),
                                 sampler="heun", nfe=9)

or search it and use what the search stored::

    skiptune.search("ckpt.pt", skiptune.SearchConfig(nfe=9), db="skiptune.db")
    schedule = skiptune.best_schedule("skiptune.db", model, nfe=9)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skiptune.errors import ConfigurationError, SkiptuneError

# The rest is imported on first use (PEP 562): ``import skiptune.cli`` then costs no torch
# import, so the command line installs its Ctrl-C handler before the seconds torch takes.
# Names outside ``__all__`` stay reachable here for scripts written against the older,
# larger surface; their home is the subpackage named.
_LAZY = {
    "CheckpointError": "skiptune.errors",
    "FileAccessError": "skiptune.errors",
    "InsufficientMemoryError": "skiptune.errors",
    "ModelError": "skiptune.errors",
    "NonFiniteSampleError": "skiptune.errors",
    "StorageError": "skiptune.errors",
    "FreeU": "skiptune.freeu",
    "SkipSite": "skiptune.models",
    "TunableModel": "skiptune.models",
    "UNetConfig": "skiptune.models",
    "load_model": "skiptune.models",
    "save_checkpoint": "skiptune.models",
    "CustomModel": "skiptune.models.custom",
    "CustomSkipSite": "skiptune.models.custom",
    "wrap_module": "skiptune.models.custom",
    "SAMPLERS": "skiptune.sampling",
    "initial_noise": "skiptune.sampling",
    "karras_sigmas": "skiptune.sampling",
    "nfe_for_steps": "skiptune.sampling",
    "sample": "skiptune.sampling",
    "steps_for_nfe": "skiptune.sampling",
    "SHAPES": "skiptune.schedule",
    "TuningSchedule": "skiptune.schedule",
    "RhoSchedule": "skiptune.schedule",
    "skip_tuning": "skiptune.skips",
    "ExportedSchedule": "skiptune.exported",
    "load_exported": "skiptune.exported",
    "best_schedule": "skiptune.tuner",
    "search": "skiptune.tuner",
    "SearchConfig": "skiptune.tuner",
    "ValidationSettings": "skiptune.tuner",
    "ObjectiveSettings": "skiptune.objectives",
    "export_schedule": "skiptune.tuner",
    "front_report": "skiptune.tuner",
    "list_studies": "skiptune.tuner",
    "SearchSpace": "skiptune.tuner",
    "StudySummary": "skiptune.tuner",
    "ObjectiveConfig": "skiptune.objectives",
}

if TYPE_CHECKING:
    # The public names only; the others reach mypy, too, through __getattr__.
    from skiptune.exported import ExportedSchedule, load_exported
    from skiptune.freeu import FreeU
    from skiptune.models import TunableModel, load_model
    from skiptune.objectives import ObjectiveConfig, ObjectiveSettings
    from skiptune.sampling import initial_noise, sample
    from skiptune.schedule import TuningSchedule
    from skiptune.skips import skip_tuning
    from skiptune.tuner import (
        SearchConfig,
        SearchSpace,
        ValidationSettings,
        best_schedule,
        export_schedule,
        front_report,
        list_studies,
        search,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skiptune' has no attribute {name!r}")


__version__ = "0.1.0"

# The headline: load a model, apply or search a schedule, read and export what was stored.
__all__ = [
    "ConfigurationError",
    "ExportedSchedule",
    "FreeU",
    "ObjectiveConfig",
    "ObjectiveSettings",
    "SearchConfig",
    "SearchSpace",
    "SkiptuneError",
    "TunableModel",
    "TuningSchedule",
    "ValidationSettings",
    "__version__",
    "best_schedule",
    "export_schedule",
    "front_report",
    "initial_noise",
    "list_studies",
    "load_exported",
    "load_model",
    "sample",
    "search",
    "skip_tuning",
]
