"""The model families skiptune loads: how each is detected, loaded and described.

``load_model`` resolves the source once (:func:`resolve_source`), then hands it to the first
family of :data:`FAMILIES` whose ``detect`` accepts it; every "not found" or "not a model"
message lists what the families accept, so a new family is one more entry here and the
messages follow. Adapter modules are imported only when their family is chosen: detecting
reads a file header or a ``config.json`` at most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models._base import TunableModel

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "accepted_formats",
    "check_options",
    "family_of",
    "resolve_source",
]


class Loader(Protocol):
    def __call__(
        self,
        source: str,
        *,
        device: torch.device,
        trust_pickle: bool,
        revision: str | None,
        variant: str | None,
    ) -> TunableModel: ...


@dataclass(frozen=True)
class ModelFamily:
    """One kind of model source.

    Attributes:
        name: the family's name, as :attr:`TunableModel.family` reports it.
        accepts: what it accepts, as a phrase for error messages ("a skiptune .pt checkpoint").
        detect: whether a source (the text the user gave) belongs to this family; cheap.
        load: loads a detected source (see :class:`Loader`).
        options: the load options beyond device and trust_pickle that mean something for this
            family (``"revision"``, ``"variant"``, ``"one_step_sigma"``); giving another
            is an error. Options that change the loaded model rather than what is read
            (``one_step_sigma``) are applied by ``load_model`` after ``load``.
        reads_files: whether it reads a file or folder whose unforeseen damage should become
            one error line naming the source (not so for a user's adapter code).
    """

    name: str
    accepts: str
    detect: Callable[[str], bool]
    load: Loader
    options: frozenset[str] = frozenset()
    reads_files: bool = True


def _existing_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.exists() and not path.is_dir() else None


def _is_edm_snapshot(text: str) -> bool:
    from skiptune.models import edm

    path = _existing_file(text)
    return path is not None and edm.looks_like_edm_snapshot(path)


def _is_native(text: str) -> bool:
    # Every other file: the native loader names what is wrong with one that is no checkpoint.
    return _existing_file(text) is not None and not _is_edm_snapshot(text)


def _load_native(source: str, *, device: torch.device, trust_pickle: bool,
                 revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import native

    return native.load(Path(source).expanduser(), device=device, trust_pickle=trust_pickle)


def _load_edm(source: str, *, device: torch.device, trust_pickle: bool,
              revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import edm

    # Read as data whether or not pickles are trusted: EDM's own loader would exec the
    # network source the file carries, and skiptune never needs to.
    return edm.load(Path(source).expanduser(), device=device)


def _is_consistency_folder(text: str) -> bool:
    from skiptune.models import diffusers_cm

    return diffusers_cm.is_consistency_pipeline(Path(text).expanduser())


def _load_consistency_folder(source: str, *, device: torch.device, trust_pickle: bool,
                             revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import diffusers_cm

    return diffusers_cm.load(Path(source).expanduser(), device=device, variant=variant)


def _is_unet_folder(text: str) -> bool:
    from skiptune.models import diffusers_unet

    return diffusers_unet.is_diffusers_folder(Path(text).expanduser())


def _load_unet_folder(source: str, *, device: torch.device, trust_pickle: bool,
                      revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import diffusers_unet

    return diffusers_unet.load(Path(source).expanduser(), device=device, variant=variant)


def _is_sd_folder(text: str) -> bool:
    from skiptune.models import diffusers_sd

    path = Path(text).expanduser()
    # A pipeline folder (model_index.json) goes to the SD adapter, which names a missing
    # unet/ itself; so does a bare UNet2DConditionModel folder.
    return path.is_dir() and (
        diffusers_sd.is_pipeline_folder(path) or diffusers_sd.is_conditional_unet_folder(path)
    )


def _load_sd_folder(source: str, *, device: torch.device, trust_pickle: bool,
                    revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import diffusers_sd

    return diffusers_sd.load(Path(source).expanduser(), device=device, variant=variant)


def _is_distilled_sd_folder(kind: str) -> Callable[[str], bool]:
    """Detects an SD folder whose scheduler samples as ``kind`` ("lcm", "turbo") does."""

    def detect(text: str) -> bool:
        from skiptune.models import diffusers_sd

        path = Path(text).expanduser()
        return _is_sd_folder(text) and diffusers_sd.scheduler_distillation(path) == kind

    return detect


def _is_adapter(text: str) -> bool:
    from skiptune.models import custom

    return custom.is_adapter_spec(text)


def _load_adapter(source: str, *, device: torch.device, trust_pickle: bool,
                  revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import custom

    return custom.load(source, device=device)


def _is_hub_id(text: str) -> bool:
    from skiptune.models import hub

    return hub.is_hub_id(text)


def _load_hub(source: str, *, device: torch.device, trust_pickle: bool,
              revision: str | None, variant: str | None) -> TunableModel:
    from skiptune.models import hub

    folder = hub.resolve(source, revision=revision, variant=variant)
    # The same code as a local folder; the hub id stays the model's name (the study group).
    model = _family_of_folder(str(folder)).load(
        str(folder), device=device, trust_pickle=False, revision=None, variant=variant
    )
    model.source = source
    return model


_FOLDER_OPTIONS = frozenset({"variant"})

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily("skiptune", "a skiptune .pt checkpoint", _is_native, _load_native),
    ModelFamily("edm", "an NVlabs EDM network-snapshot .pkl", _is_edm_snapshot, _load_edm,
                frozenset({"one_step_sigma"})),
    # Before "diffusers": a consistency pipeline's unet/ is a UNet2DModel too.
    ModelFamily("diffusers-cm", "a diffusers ConsistencyModelPipeline folder",
                _is_consistency_folder, _load_consistency_folder, _FOLDER_OPTIONS),
    ModelFamily("diffusers", "a diffusers UNet2DModel folder", _is_unet_folder,
                _load_unet_folder, _FOLDER_OPTIONS),
    # Before "diffusers-sd": the same folders, whose scheduler says they sample in few steps
    # (diffusers_sd loads them all, and names the family from the scheduler config too).
    ModelFamily("diffusers-lcm", "a diffusers LCM or LCM-LoRA pipeline folder (LCMScheduler)",
                _is_distilled_sd_folder("lcm"), _load_sd_folder, _FOLDER_OPTIONS),
    ModelFamily("diffusers-turbo", "a diffusers SD-Turbo or SDXL-Turbo pipeline folder "
                "(EulerAncestralDiscreteScheduler, trailing)", _is_distilled_sd_folder("turbo"),
                _load_sd_folder, _FOLDER_OPTIONS),
    ModelFamily("diffusers-sd", "a diffusers pipeline or UNet2DConditionModel folder",
                _is_sd_folder, _load_sd_folder, _FOLDER_OPTIONS),
    ModelFamily("custom", "module:attr naming an adapter", _is_adapter, _load_adapter,
                reads_files=False),
    ModelFamily("hub", "a Hugging Face hub id (org/name)", _is_hub_id, _load_hub,
                frozenset({"revision", "variant"})),
)
"""Every family, in the order their ``detect`` is tried."""


def accepted_formats() -> str:
    """What the families accept, as one phrase: "a, b, … or z"."""
    phrases = [family.accepts for family in FAMILIES]
    return f"{', '.join(phrases[:-1])} or {phrases[-1]}"


def resolve_source(source: str | Path) -> str:
    """The source as the families detect it: the one place where a source is rewritten
    before detection. A URL becomes the file it names in skiptune's checked cache
    (downloaded once), so every family reads a local file and the study's identity (the
    weights' fingerprint) is the same by path and by URL."""
    text = str(source)
    if not text.strip():
        # Path("") is the working directory: say what is missing instead of judging the folder.
        raise CheckpointError(f"no model given: pass model with {accepted_formats()}",
                              field="model")
    from skiptune import downloads

    if downloads.is_url(text):
        return str(downloads.fetch(text, what="model"))
    return text


# Linux and macOS: a file name of at most 255 bytes, a path of at most 4,096.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def _too_long(text: str) -> str | None:
    """Why ``text`` can be neither a path nor a hub id by its length alone, or None; checked
    before any family touches the filesystem (which would raise 'File name too long')."""
    encoded = text.encode("utf-8", "surrogateescape")
    longest = max(len(part) for part in encoded.split(b"/"))
    if len(encoded) <= MAX_PATH_BYTES and longest <= MAX_NAME_BYTES:
        return None
    return (f"model {text[:40]!r}… ({len(text):,} characters) is neither a path (a name of "
            f"{longest:,} bytes, a path of {len(encoded):,}: a file name holds at most "
            f"{MAX_NAME_BYTES} bytes, a path {MAX_PATH_BYTES:,}) nor a Hugging Face hub id "
            "(org/name, each part at most 96 characters); check what was passed as model")


def family_of(text: str) -> ModelFamily:
    """The first family that detects ``text``; CheckpointError naming what is accepted."""
    reason = _too_long(text)
    if reason is not None:
        raise CheckpointError(reason, field="model")
    for family in FAMILIES:
        if family.detect(text):
            return family
    if Path(text).expanduser().is_dir():
        raise CheckpointError(
            f"folder {text!r} is not a diffusers UNet2DModel folder nor a pipeline folder "
            "(no config.json with _class_name UNet2DModel or UNet2DConditionModel, no "
            f"model_index.json); pass {accepted_formats()}"
        )
    raise CheckpointError(f"model {text!r} not found: pass {accepted_formats()}")


_HUB_FOLDER_FAMILIES = ("diffusers-cm", "diffusers", "diffusers-lcm", "diffusers-turbo",
                        "diffusers-sd")


def _family_of_folder(folder: str) -> ModelFamily:
    """The local-folder family of a resolved hub snapshot (never the hub family again)."""
    family = family_of(folder)
    if family.name not in _HUB_FOLDER_FAMILIES:
        raise CheckpointError(
            f"{folder!r} holds no diffusers model (no model_index.json, no config.json of a "
            "UNet2DModel or UNet2DConditionModel); pass a diffusers pipeline or U-Net repository"
        )
    return family


def check_options(family: ModelFamily, text: str, **options: object) -> None:
    """ConfigurationError for a load option (revision, variant, one_step_sigma) this family
    has no use for."""
    for name, value in options.items():
        if value is not None and name not in family.options:
            takes = [f.accepts for f in FAMILIES if name in f.options]
            raise ConfigurationError(
                f"{name} applies to {' or '.join(takes)}, and {text!r} is "
                f"{family.accepts}; leave {name} out",
                field=name,
            )
