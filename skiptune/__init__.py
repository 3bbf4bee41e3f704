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

from typing import TYPE_CHECKING

from skiptune._lazy import lazy_exports
from skiptune.errors import ConfigurationError, SkiptuneError

# The rest is imported on first use (PEP 562): ``import skiptune.cli`` then costs no torch
# import, so the command line installs its Ctrl-C handler before the seconds torch takes.
# Names outside ``__all__`` stay reachable here for scripts written against the older,
# larger surface; their home is the subpackage named.
_EXPORTS = {
    "skiptune.errors": (
        "CheckpointError", "FileAccessError", "InsufficientMemoryError", "ModelError",
        "NonFiniteSampleError", "StorageError",
    ),
    "skiptune.freeu": ("FreeU",),
    "skiptune.models": ("SkipSite", "TunableModel", "UNetConfig", "load_model", "save_checkpoint"),
    "skiptune.models.custom": ("CustomModel", "CustomSkipSite", "wrap_module"),
    "skiptune.sampling": (
        "SAMPLERS", "initial_noise", "karras_sigmas", "nfe_for_steps", "sample", "steps_for_nfe",
    ),
    "skiptune.schedule": ("SHAPES", "TuningSchedule", "RhoSchedule"),
    "skiptune.skips": ("skip_tuning",),
    "skiptune.exported": ("ExportedSchedule", "load_exported"),
    "skiptune.tuner": (
        "best_schedule", "search", "SearchConfig", "ValidationSettings", "export_schedule",
        "front_report", "list_studies", "SearchSpace", "StudySummary",
    ),
    "skiptune.objectives": ("ObjectiveSettings", "ObjectiveConfig"),
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
