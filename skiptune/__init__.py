"""skiptune: automatic Skip-Tuning for diffusion U-Nets.

Skip-Tuning (Ma et al., ICML 2024) scales a U-Net's skip connections by factors ρ,
interpolated from ``rho_bottom`` at the deepest skip to ``rho_top`` at the shallowest,
which sharply improves sampling at few function evaluations (NFE). skiptune searches ρ
automatically and applies it in one call::

    model = skiptune.load_model("ckpt.pt")
    with skiptune.skip_tuning(model, skiptune.RhoSchedule(rho_bottom=0.6)):
        images = skiptune.sample(model, skiptune.initial_noise(16, model.image_shape, seed=0),
                                 sampler="heun", nfe=9)

or, with what a search stored: ``skiptune.best_schedule("skiptune.db", model, nfe=9)``.
"""

from __future__ import annotations

from skiptune.errors import (
    CheckpointError,
    ConfigurationError,
    InsufficientMemoryError,
    NonFiniteSampleError,
    SkiptuneError,
    StorageError,
)
from skiptune.freeu import FreeU
from skiptune.models import (
    SkipSite,
    TunableModel,
    UNetConfig,
    load_model,
    save_checkpoint,
)
from skiptune.models.custom import CustomModel, CustomSkipSite, wrap_module
from skiptune.sampling import (
    SAMPLERS,
    initial_noise,
    karras_sigmas,
    nfe_for_steps,
    sample,
    steps_for_nfe,
)
from skiptune.schedule import SHAPES, RhoSchedule
from skiptune.skips import skip_tuning
from skiptune.tuner import best_schedule, load_exported

__version__ = "0.1.0"

__all__ = [
    "SAMPLERS",
    "SHAPES",
    "CheckpointError",
    "ConfigurationError",
    "CustomModel",
    "CustomSkipSite",
    "FreeU",
    "InsufficientMemoryError",
    "NonFiniteSampleError",
    "RhoSchedule",
    "SkipSite",
    "SkiptuneError",
    "StorageError",
    "TunableModel",
    "UNetConfig",
    "__version__",
    "best_schedule",
    "initial_noise",
    "karras_sigmas",
    "load_exported",
    "load_model",
    "nfe_for_steps",
    "sample",
    "save_checkpoint",
    "skip_tuning",
    "steps_for_nfe",
    "wrap_module",
]
