"""Prompt conditioning of a Stable-Diffusion-style U-Net: prompts or embeddings, and guidance.

The user gives either a text file of prompts (one a line; encoded once by the pipeline's
text encoder(s), which needs ``transformers``) or precomputed embeddings in a
``.safetensors`` file: ``prompt_embeds`` [P, L, D], for SDXL also ``pooled_prompt_embeds``
[P, D_pooled], and optionally ``negative_prompt_embeds`` [1 or P, L, D] (with
``negative_pooled_prompt_embeds`` for SDXL). Sample j, of noise seed s_j, takes prompt
``s_j mod P`` in every trial (common random numbers). The guidance scale g works as in
diffusers' pipelines: g ≤ 1 means no classifier-free guidance; g > 1 doubles the batch with
the negative (or empty) prompt's embedding. An LCM-distilled U-Net takes g as an input instead
(no negative prompt). The default g is the pipeline's: diffusers' for the SD generation, or
the model's own where its folder says (LCM 8.5, LCM-LoRA 1, SD-Turbo 0). The embeddings'
hash, P and g form the identity stored with a study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skiptune._files import check_input_file, read_text
from skiptune.errors import ConfigurationError
from skiptune.models._base import fingerprint_state_dict
from skiptune.models._text_encoders import encode_texts
from skiptune.models._unet_info import UNetInfo

__all__ = [
    "MAX_PROMPTS",
    "MAX_PROMPTS_FILE_BYTES",
    "MAX_PROMPT_CHARS",
    "OPTIONS",
    "PromptConditioner",
    "UNetInfo",
    "check_prompt",
    "read_prompts",
]

OPTIONS = ("prompts", "embeddings", "negative_prompt", "guidance_scale")
# What diffusers' pipelines default to: StableDiffusionPipeline 7.5, StableDiffusionXLPipeline 5.
DEFAULT_GUIDANCE = {"sd1": 7.5, "sd2": 7.5, "sdxl": 5.0}


@dataclass(frozen=True)
class _Embeddings:
    """Prompt embeddings, one row per prompt, float32 on the CPU; negatives have 1 or P rows."""

    prompt: torch.Tensor                          # [P, L, D]
    pooled: torch.Tensor | None = None            # [P, D_pooled] (SDXL)
    negative: torch.Tensor | None = None          # [1 or P, L, D]
    negative_pooled: torch.Tensor | None = None   # [1 or P, D_pooled] (SDXL)

    @property
    def count(self) -> int:
        return int(self.prompt.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("prompt", "pooled", "negative", "negative_pooled")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


MAX_PROMPTS = 1_000
"""Most prompts a prompts file may hold: each is held encoded ([L, D] floats, 0.24 MB for
SD 1.x, 0.63 MB for SDXL) for the whole run."""
MAX_PROMPT_CHARS = 1_000
"""Longest prompt (characters), the negative prompt included; CLIP reads 77 tokens of it."""
MAX_PROMPTS_FILE_BYTES = 1 << 20
"""Largest prompts file (bytes): :data:`MAX_PROMPTS` prompts of about 1,000 characters."""

_PROMPTS_FIX = (f"pass a text file of at most {MAX_PROMPTS:,} prompts, one a line, each at "
                f"most {MAX_PROMPT_CHARS:,} characters")


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a text file, one a line; blank lines are skipped.

    Read through the bounded reader (:func:`skiptune._files.read_text`): a regular file of
    at most :data:`MAX_PROMPTS_FILE_BYTES` bytes, never a FIFO or a device. Raises
    FileAccessError for a missing, unreadable, non-regular or too large file, and
    ConfigurationError for one without prompts, with more than :data:`MAX_PROMPTS` or a
    prompt longer than :data:`MAX_PROMPT_CHARS` characters.
    """
    target = Path(path).expanduser()
    text = read_text(target, what="prompts file", fix=_PROMPTS_FIX,
                     max_bytes=MAX_PROMPTS_FILE_BYTES)
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigurationError(
            f"prompts file {str(target)!r} holds no prompts; write one prompt per line"
        )
    if len(prompts) > MAX_PROMPTS:
        raise ConfigurationError(
            f"prompts file {str(target)!r} holds {len(prompts):,} prompts; {_PROMPTS_FIX}"
        )
    for number, prompt in enumerate(prompts, start=1):
        check_prompt(prompt, where=f"prompt {number} of {str(target)!r}")
    return prompts


def check_prompt(prompt: str, *, where: str) -> str:
    """``prompt`` if it is at most :data:`MAX_PROMPT_CHARS` characters, else one line."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigurationError(
            f"{where} is {len(prompt):,} characters long; write at most {MAX_PROMPT_CHARS:,}"
        )
    return prompt


class PromptConditioner:
    """Draws each sample's prompt embedding (and guidance) from its seed; see the module doc.

    A freshly loaded model's conditioner has no prompts yet: :meth:`with_options` gives it
    ``prompts`` or ``embeddings`` (and ``negative_prompt``, ``guidance_scale``); until then
    using it is a ConfigurationError that says which option to pass.
    """

    def __init__(
        self,
        info: UNetInfo,
        embeddings: _Embeddings | None = None,
        *,
        guidance_scale: float | None = None,
        source: str = "",
    ) -> None:
        self.info = info
        self.embeddings = embeddings
        self.guidance_scale = _default_guidance(info) if guidance_scale is None else guidance_scale
        self.source = source

    def _ready(self) -> _Embeddings:
        if self.embeddings is None:
            raise ConfigurationError(
                "a text-conditioned U-Net needs prompts: pass prompts FILE (one prompt a "
                "line) or embeddings FILE.safetensors (prompt_embeds [P, L, D])",
                field=("prompts", "embeddings"),
            )
        return self.embeddings

    @property
    def guided(self) -> bool:
        """Whether it guides classifier-free, against a negative (or empty) prompt: g > 1 on a
        U-Net that does not take the guidance scale as an input (an LCM-distilled one does)."""
        return self.guidance_scale > 1.0 and self.info.guidance_embedding_dim is None

    @property
    def identity(self) -> dict[str, Any]:
        embeddings = self._ready()
        return {
            "kind": "prompt_embeddings",
            "count": embeddings.count,
            "embeddings_sha256": fingerprint_state_dict(embeddings.tensors()),
            "guidance_scale": self.guidance_scale,
        }

    def __call__(self, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        embeddings = self._ready()
        rows = torch.tensor([int(s) % embeddings.count for s in seeds], dtype=torch.long)
        condition = {
            "prompt_embeds": embeddings.prompt[rows],
            "guidance_scale": torch.full((len(rows),), float(self.guidance_scale)),
        }
        if embeddings.pooled is not None:
            condition["pooled_prompt_embeds"] = embeddings.pooled[rows]
        if self.guided and embeddings.negative is not None:
            negative_rows = rows % embeddings.negative.shape[0]
            condition["negative_prompt_embeds"] = embeddings.negative[negative_rows]
            if embeddings.negative_pooled is not None:
                condition["negative_pooled_prompt_embeds"] = (
                    embeddings.negative_pooled[negative_rows]
                )
        return condition

    def with_options(self, options: Mapping[str, Any]) -> PromptConditioner:
        """A conditioner with the user's prompts or embeddings, negative prompt and guidance.

        Raises ConfigurationError for an unknown option, both or neither of ``prompts`` and
        ``embeddings``, a bad guidance scale (or a negative prompt with g ≤ 1, where it
        would be ignored), and embeddings that do not fit the U-Net.
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"a text-conditioned U-Net takes no {', '.join(unknown)}; its options are "
                f"{', '.join(OPTIONS)}"
            )
        prompts, file = options.get("prompts"), options.get("embeddings")
        negative = options.get("negative_prompt")
        if negative is not None:       # checked before anything is loaded or encoded
            check_prompt(str(negative), where="the negative prompt")
        guidance = _guidance(options.get("guidance_scale"), self.info)
        if negative is not None and self.info.guidance_embedding_dim is not None:
            raise ConfigurationError(
                "this LCM-distilled U-Net takes the guidance scale as an input and was distilled "
                "against the empty prompt: it has no use for a negative prompt (diffusers' LCM "
                "pipeline ignores one); leave negative_prompt out",
                field="negative_prompt",
            )
        if negative is not None and guidance <= 1.0:
            raise ConfigurationError(
                f"a negative prompt acts only with classifier-free guidance, and guidance "
                f"scale {guidance:g} ≤ 1 turns guidance off; pass guidance_scale > 1 or "
                "leave the negative prompt out",
                field="guidance_scale",
            )
        if (prompts is None) == (file is None):
            raise ConfigurationError(
                "pass exactly one of prompts FILE (text, one a line) and embeddings "
                "FILE.safetensors",
                field=("prompts", "embeddings"),
            )
        # Classifier-free: the negative (or empty) prompt's embedding is needed.
        guided = guidance > 1.0 and self.info.guidance_embedding_dim is None
        if file is not None:
            embeddings = _read_embeddings(Path(file).expanduser(), self.info)
            if negative is not None:
                negative_embeds, negative_pooled = encode_texts(self.info, [str(negative)])
                embeddings = _with_negative(embeddings, negative_embeds, negative_pooled)
            source = str(file)
        else:
            assert prompts is not None          # exactly one of the two, checked above
            texts = read_prompts(prompts)
            prompt, pooled = encode_texts(self.info, texts)
            embeddings = _Embeddings(prompt=prompt, pooled=pooled)
            if guided and not (negative is None and self.info.force_zeros_for_empty_prompt):
                negative_embeds, negative_pooled = encode_texts(self.info, [str(negative or "")])
                embeddings = _with_negative(embeddings, negative_embeds, negative_pooled)
            source = str(prompts)
        if guided and embeddings.negative is None:
            embeddings = self._empty_negative(embeddings, source)
        return PromptConditioner(self.info, embeddings, guidance_scale=guidance, source=source)

    def _empty_negative(self, embeddings: _Embeddings, source: str) -> _Embeddings:
        """Guidance without a negative prompt: SDXL's zeros, else the file must carry ""'s."""
        if not self.info.force_zeros_for_empty_prompt:
            raise ConfigurationError(
                f"guidance needs the empty prompt's embedding and {source!r} has no "
                "negative_prompt_embeds; add the embedding of \"\" under that key, pass "
                "prompts as text, or guidance_scale 1",
                field=("prompts", "guidance_scale"),
            )
        negative_pooled = None
        if embeddings.pooled is not None:
            negative_pooled = torch.zeros_like(embeddings.pooled[:1])
        return _with_negative(embeddings, torch.zeros_like(embeddings.prompt[:1]), negative_pooled)


MAX_GUIDANCE = 100.0
"""The largest classifier-free guidance scale taken (SD's usual ones lie between 1 and 20)."""


def _default_guidance(info: UNetInfo) -> float:
    """The guidance scale its pipeline samples with by default: the model's own where its
    folder says (an LCM's, SD-Turbo's 0), else diffusers' for its SD generation."""
    return DEFAULT_GUIDANCE[info.family] if info.default_guidance is None else info.default_guidance


def _guidance(value: Any, info: UNetInfo) -> float:
    if value is None:
        return _default_guidance(info)
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = math.nan
    # Any scale ≤ 1 turns guidance off, as the help says; beyond ±MAX_GUIDANCE the guided
    # difference overflows to inf (1e300), or the scale itself a float32 (-1e308), long
    # before it could be a choice.
    if not math.isfinite(scale) or abs(scale) > MAX_GUIDANCE:
        raise ConfigurationError(
            f"guidance scale must be a finite number from {-MAX_GUIDANCE:g} to {MAX_GUIDANCE:g}, "
            f"got {value!r}; pass e.g. guidance_scale 7.5 (1 or less: no classifier-free "
            "guidance)",
            field="guidance_scale",
        )
    return scale


def _with_negative(
    embeddings: _Embeddings, negative: torch.Tensor, negative_pooled: torch.Tensor | None
) -> _Embeddings:
    return _Embeddings(embeddings.prompt, embeddings.pooled, negative, negative_pooled)


def _read_embeddings(path: Path, info: UNetInfo) -> _Embeddings:
    """The embeddings of a ``.safetensors`` file, checked against the U-Net's widths."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as e:
        raise ConfigurationError(
            f"reading {str(path)!r} needs the safetensors package: pip install safetensors"
        ) from e
    check_input_file(path, what="embeddings file", fix="pass a .safetensors file with "
                     "prompt_embeds [P, L, D]")       # never a FIFO or a device
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ConfigurationError(f"cannot read embeddings file {str(path)!r}: {e}") from e
    if "prompt_embeds" not in tensors:
        raise ConfigurationError(
            f"embeddings file {str(path)!r} has no prompt_embeds (it holds "
            f"{sorted(tensors) or 'nothing'}); save prompt_embeds [P, L, D] with safetensors"
        )
    prompt = _checked(path, tensors, "prompt_embeds", (None, None, info.cross_attention_dim))
    count, length = int(prompt.shape[0]), int(prompt.shape[1])
    pooled = negative_pooled = None
    if info.pooled_dim is not None:
        if "pooled_prompt_embeds" not in tensors:
            raise ConfigurationError(
                f"this SDXL U-Net needs pooled text embeddings, and {str(path)!r} has no "
                f"pooled_prompt_embeds [{count}, {info.pooled_dim}]; save text_encoder_2's "
                "pooled output under that key"
            )
        pooled = _checked(path, tensors, "pooled_prompt_embeds", (count, info.pooled_dim))
    negative = None
    if "negative_prompt_embeds" in tensors:
        negative = _checked(path, tensors, "negative_prompt_embeds",
                            ((1, count), length, info.cross_attention_dim))
        if info.pooled_dim is not None:
            if "negative_pooled_prompt_embeds" not in tensors:
                raise ConfigurationError(
                    f"{str(path)!r} has negative_prompt_embeds but no "
                    "negative_pooled_prompt_embeds, which this SDXL U-Net needs too"
                )
            negative_pooled = _checked(path, tensors, "negative_pooled_prompt_embeds",
                                       ((int(negative.shape[0]),), info.pooled_dim))
    return _Embeddings(prompt, pooled, negative, negative_pooled)


def _checked(
    path: Path, tensors: Mapping[str, torch.Tensor], key: str, expected: tuple[Any, ...]
) -> torch.Tensor:
    """``tensors[key]`` as float32, if its shape fits ``expected`` (None: any; a tuple: one of)."""
    tensor = tensors[key]
    shape = tuple(int(d) for d in tensor.shape)

    def fits(size: int, want: Any) -> bool:
        return want is None or (size in want if isinstance(want, tuple) else size == want)

    if len(shape) != len(expected) or not tensor.is_floating_point() or shape[0] < 1:
        raise ConfigurationError(
            f"{key} in {str(path)!r} must be a float tensor of {len(expected)} dimensions, got "
            f"{tensor.dtype} {list(shape)}"
        )
    width, want = shape[-1], expected[-1]
    if not fits(width, want):
        raise ConfigurationError(
            f"{key} in {str(path)!r} is {width} wide but this U-Net takes {want}-wide "
            "embeddings; compute them with this model's own text encoder(s)"
        )
    if not all(fits(s, w) for s, w in zip(shape, expected, strict=True)):
        raise ConfigurationError(
            f"{key} in {str(path)!r} has shape {list(shape)}, which does not fit the other "
            "embeddings (one row per prompt, the same sequence length)"
        )
    tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigurationError(f"{key} in {str(path)!r} holds NaN or infinite values")
    return tensor
