"""Models named by Hugging Face hub id (``org/name``), fetched through the standard cache.

The id is resolved to a snapshot folder by ``huggingface_hub.snapshot_download``, so
``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and tokens (``HF_TOKEN``, ``hf auth login``)
behave as in diffusers; the folder is then loaded by the same code as a local pipeline or
U-Net folder. Only what skiptune reads is downloaded: configs, tokenizers, and one weights
file per component (the asked variant, safetensors before ``.bin``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

from skiptune.errors import CheckpointError

__all__ = ["is_hub_id", "resolve", "weight_files"]

# Hub rules: one "/", names of letters, digits, "-", "_", "." (no "--" or ".." inside).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
# A missing "dir/file.pt" is a mistyped path, not a repository.
_FILE_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt", ".safetensors", ".bin", ".npz")
_CONFIGS = ("*.json", "*.txt", "*.model")          # configs, tokenizer vocabularies/merges
_WEIGHTS = (".safetensors", ".bin")                # in the order preferred


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as ``org/name`` and is no existing path nor ``module:attr``."""
    return (
        bool(_HUB_ID.fullmatch(text))
        and "--" not in text
        and ".." not in text
        and not text.lower().endswith(_FILE_SUFFIXES)
        and not Path(text).expanduser().exists()
    )


def weight_files(files: Iterable[str], variant: str | None) -> list[str]:
    """The weights file to fetch in each folder of a repository listing: the variant's
    (``name.<variant>.safetensors``) when asked, else the plain one, safetensors first."""
    chosen: dict[str, str] = {}
    rank: dict[str, int] = {}
    for path in files:
        folder, name = posixpath.split(path)
        for order, suffix in enumerate(_WEIGHTS):
            if not name.endswith(suffix):
                continue
            parts = name[: -len(suffix)].split(".")
            file_variant = parts[-1] if len(parts) > 1 else None
            if file_variant == variant and order < rank.get(folder, len(_WEIGHTS)):
                chosen[folder], rank[folder] = path, order
    return sorted(chosen.values())


def resolve(repo_id: str, *, revision: str | None = None, variant: str | None = None) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision``, downloaded when missing.

    Raises:
        CheckpointError: huggingface_hub is missing; the id is not in the cache while
            offline (``HF_HUB_OFFLINE``); the repository or revision does not exist or is
            gated; or the download fails.
    """
    try:
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError as e:
        raise CheckpointError(
            f"{repo_id!r} names a Hugging Face repository, which needs huggingface_hub: "
            "pip install 'skiptune[diffusers]'"
        ) from e
    from skiptune import downloads

    where = repo_id + (f" at revision {revision!r}" if revision else "")
    # skiptune's offline mode (--offline, SKIPTUNE_OFFLINE) holds for the hub too.
    offline = constants.is_offline_mode() or downloads.is_offline()
    try:
        patterns = None if offline else _patterns(repo_id, revision, variant)
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline
        )
    except errors.LocalEntryNotFoundError as e:
        raise CheckpointError(
            f"model {where} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE})"
            f"{' and downloads are off (offline mode)' if offline else ''}, nor a file or "
            "folder here; "
            "download it once online, point HF_HOME at a cache that holds it, or pass a path"
        ) from e
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
            errors.GatedRepoError) as e:
        raise CheckpointError(
            f"cannot fetch model {where} from the Hugging Face hub ({type(e).__name__}); check "
            "the id and revision, and log in (hf auth login or HF_TOKEN) for a private or "
            "gated repository",
            field="revision",
        ) from e
    except (errors.HfHubHTTPError, OSError) as e:
        raise CheckpointError(
            f"cannot fetch model {where} from the Hugging Face hub: "
            f"{' '.join(str(e).split())[:200]}"
        ) from e
    return Path(folder)


def _patterns(repo_id: str, revision: str | None, variant: str | None) -> list[str] | None:
    """What to download online: configs and one weights file per folder."""
    import huggingface_hub

    files = huggingface_hub.list_repo_files(repo_id, revision=revision)
    return [*_CONFIGS, *weight_files(files, variant)]
