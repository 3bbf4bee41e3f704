"""Text prompts → embeddings with a pipeline's own CLIP text encoder(s), cached on disk.

SD 1.x/2.x: the last hidden state of ``text_encoder``. SDXL: the penultimate hidden states
of ``text_encoder`` and ``text_encoder_2`` side by side, and the projected pooled output of
``text_encoder_2``: what ``StableDiffusionPipeline.encode_prompt`` and
``StableDiffusionXLPipeline.encode_prompt`` compute (tested against them).

Encoding loads ``transformers`` and the encoders, which takes far longer than a search's
first trial on a small model, so each list of texts encoded is cached in skiptune's cache
folder (``$SKIPTUNE_CACHE_DIR``, else ``~/.cache/skiptune``) under ``prompt_embeddings/``,
keyed by the texts and a SHA-256 of the encoder and tokenizer files: other weights or
other texts never reuse an entry. An entry is checked when read (its key, shapes, finite
values); one that fails is encoded again and replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from skiptune._install import install_hint
from skiptune.errors import ConfigurationError, SkiptuneError

if TYPE_CHECKING:
    from skiptune.models._unet_info import UNetInfo

__all__ = ["cache_path", "encode_texts", "sequence_length"]

CACHE_FOLDER = "prompt_embeddings"
_FORMAT = "skiptune-prompt-embeddings-1"   # bumped if what is cached changes meaning
ENCODE_BATCH = 64
"""Prompts run through a text encoder at once: its activations for a batch, never for all."""


def _parts(info: UNetInfo) -> tuple[tuple[str, str], ...]:
    """(tokenizer folder, text encoder folder) of each encoder the pipeline runs, in order."""
    parts: tuple[tuple[str, str], ...] = (("tokenizer", "text_encoder"),)
    if info.pooled_dim is not None:
        parts += (("tokenizer_2", "text_encoder_2"),)
    return parts


def _pipeline_folder(info: UNetInfo) -> Path:
    folder = info.folder
    if folder is None or not all(
        (folder / name).is_dir() for part in _parts(info) for name in part
    ):
        _transformers()      # name the missing package first: text prompts need both
        wanted = ", ".join(f"{name}/" for part in _parts(info) for name in part)
        raise ConfigurationError(
            f"prompts given as text need the pipeline's {wanted} folders; pass the pipeline "
            "folder as model, or precomputed embeddings",
            field=("embeddings", "model"),
        )
    return folder


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ConfigurationError(
            f"prompts given as text need the transformers package: {install_hint('sd')}; or pass "
            "precomputed embeddings FILE.safetensors",
            field="embeddings",
        ) from e
    return transformers


def _encoders_sha256(folder: Path, info: UNetInfo) -> str:
    """SHA-256 over the names and bytes of every file of the tokenizer(s) and encoder(s)."""
    from skiptune._files import sha256_file

    digest = hashlib.sha256()
    for part in _parts(info):
        for name in part:
            for file in sorted(p for p in (folder / name).rglob("*") if p.is_file()):
                digest.update(file.relative_to(folder).as_posix().encode())
                digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def cache_path(info: UNetInfo, texts: list[str]) -> tuple[Path, str]:
    """The cache file of these texts encoded by this pipeline's encoders, and its key."""
    from skiptune.downloads import cache_dir

    folder = _pipeline_folder(info)
    key = hashlib.sha256(json.dumps({
        "format": _FORMAT, "texts": texts, "encoders": _encoders_sha256(folder, info),
        "pooled": info.pooled_dim is not None,
    }).encode()).hexdigest()
    return cache_dir() / CACHE_FOLDER / f"{key}.safetensors", key


def encode_texts(info: UNetInfo, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``texts`` encoded as the pipeline encodes them: (embeddings [P, L, D], pooled or None).

    Float32 on the CPU; the pooled embeddings [P, D_pooled] for SDXL only. Read from the
    cache when these texts were encoded by the same encoder files before, else encoded (on
    the CPU, once, before any sampling) and cached.

    Raises ConfigurationError when ``transformers`` is missing, the pipeline folder lacks
    its text encoder(s) or tokenizer(s), or they do not fit the U-Net.
    """
    path, key = cache_path(info, texts)
    cached = _read_cache(path, key, info, len(texts))
    if cached is not None:
        return cached
    embeds, pooled = _encode(_pipeline_folder(info), info, texts)
    _write_cache(path, key, embeds, pooled)
    return embeds, pooled


def _read_cache(
    path: Path, key: str, info: UNetInfo, count: int
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The cached embeddings, or None when absent or not what this key must hold."""
    if not path.is_file():
        return None
    try:
        from safetensors import SafetensorError, safe_open

        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("key") != key:
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (ImportError, OSError, SafetensorError):
        return None
    embeds, pooled = tensors.get("prompt_embeds"), tensors.get("pooled_prompt_embeds")
    pooled_fits = (pooled is None) if info.pooled_dim is None else (
        pooled is not None and tuple(pooled.shape) == (count, info.pooled_dim)
    )
    if (
        embeds is None or embeds.ndim != 3 or embeds.dtype != torch.float32 or not pooled_fits
        or tuple(embeds.shape[::2]) != (count, info.cross_attention_dim)
        or not all(bool(torch.isfinite(t).all()) for t in tensors.values())
    ):
        return None
    return embeds, pooled


def _write_cache(path: Path, key: str, embeds: torch.Tensor, pooled: torch.Tensor | None) -> None:
    """Store an entry atomically; a cache that cannot be written only costs a re-encode."""
    from safetensors.torch import save

    from skiptune._files import write_atomically

    tensors = {"prompt_embeds": embeds.contiguous()}
    if pooled is not None:
        tensors["pooled_prompt_embeds"] = pooled.contiguous()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, save(tensors, metadata={"key": key}))
    except (OSError, SkiptuneError):
        return


def sequence_length(tokenizer_limit: Any, positions: Any, *, where: str) -> int:
    """The token count every prompt is padded (and cut) to: the tokenizer's ``model_max_length``.

    A tokenizer that states none reports transformers' stand-in, about 1e30, which no
    tokenizer can pad to; one above the encoder's ``max_position_embeddings`` (CLIP's 77)
    could not be encoded. Either way the encoder's positions are the length, as CLIP's
    tokenizers state it. Raises ConfigurationError when neither gives a usable length.
    """
    def usable(value: Any) -> int | None:
        return value if isinstance(value, int) and 0 < value < 1 << 31 else None

    limit, most = usable(tokenizer_limit), usable(positions)
    if most is not None and (limit is None or limit > most):
        return most
    if limit is None:
        raise ConfigurationError(
            f"{where} state no prompt length (the tokenizer no model_max_length, the "
            "encoder no max_position_embeddings); add \"model_max_length\": 77 (CLIP's) to "
            "the tokenizer's tokenizer_config.json"
        )
    return limit


def _encode(
    folder: Path, info: UNetInfo, texts: list[str]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the tokenizer(s) and text encoder(s) of ``folder`` on ``texts`` (module doc)."""
    transformers = _transformers()
    classes: dict[str, Any] = {
        "text_encoder": transformers.CLIPTextModel,
        "text_encoder_2": transformers.CLIPTextModelWithProjection,
    }
    hidden, pooled = [], None
    with torch.no_grad():
        for tokenizer_dir, encoder_dir in _parts(info):
            try:
                tokenizer = transformers.CLIPTokenizer.from_pretrained(
                    folder / tokenizer_dir, local_files_only=True
                )
                encoder = classes[encoder_dir].from_pretrained(
                    folder / encoder_dir, local_files_only=True, dtype=torch.float32
                ).eval()
            except (OSError, ValueError) as e:
                raise ConfigurationError(
                    f"cannot load {encoder_dir}/ or {tokenizer_dir}/ of {str(folder)!r}: "
                    f"{' '.join(str(e).split())[:200]}"
                ) from e
            length = sequence_length(
                tokenizer.model_max_length,
                getattr(encoder.config, "max_position_embeddings", None),
                where=f"{tokenizer_dir}/ and {encoder_dir}/ of {str(folder)!r}",
            )
            ids = tokenizer(
                texts, padding="max_length", max_length=length, truncation=True,
                return_tensors="pt",
            ).input_ids
            states, pools = [], []
            for batch in ids.split(ENCODE_BATCH):     # the encoder's memory: one batch's
                output = encoder(batch, output_hidden_states=True)
                if info.pooled_dim is None:
                    states.append(output[0])
                else:
                    # SDXL: penultimate layers of both; pooled from the last (projected) one.
                    states.append(output.hidden_states[-2])
                    pools.append(output[0])
            hidden.append(torch.cat(states))
            pooled = torch.cat(pools) if pools else None
    embeds = torch.cat(hidden, dim=-1).to(torch.float32)
    if embeds.shape[-1] != info.cross_attention_dim:
        raise ConfigurationError(
            f"the text encoder(s) of {str(folder)!r} give {embeds.shape[-1]}-wide embeddings "
            f"but the U-Net takes {info.cross_attention_dim}"
        )
    if pooled is not None and pooled.shape[-1] != info.pooled_dim:
        raise ConfigurationError(
            f"text_encoder_2 of {str(folder)!r} gives {pooled.shape[-1]}-wide pooled "
            f"embeddings but the U-Net takes {info.pooled_dim}"
        )
    return embeds.contiguous(), None if pooled is None else pooled.to(torch.float32).contiguous()
