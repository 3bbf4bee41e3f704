"""Models named by Hugging Face hub id (``org/name``), fetched through the standard cache.

The id is resolved to a snapshot folder by ``huggingface_hub.snapshot_download``, so
``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and tokens (``HF_TOKEN``, ``hf auth login``)
behave as in diffusers; the folder is then loaded by the same code as a local pipeline or
U-Net folder. Only what skiptune reads is downloaded: configs, tokenizers, and one weights
file per component (the asked variant, safetensors before ``.bin``). When the hub cannot
be reached, the id is read from the cache within seconds, as diffusers falls back to it.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from skiptune._install import install_hint
from skiptune.errors import CheckpointError

__all__ = ["REACH_TIMEOUT_S", "is_hub_id", "reachable", "resolve", "weight_files"]

REACH_TIMEOUT_S = 3.0
"""Seconds to open a connection to the hub before it counts as unreachable."""

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

    When the hub cannot be reached (checked within ``REACH_TIMEOUT_S``, before any hub call,
    so huggingface_hub's retries never start), the id is read from the cache, as diffusers
    does; only an id missing there is an error.

    Raises:
        CheckpointError: huggingface_hub is missing; the id is not in the cache while
            offline (``HF_HUB_OFFLINE``) or while the hub is unreachable; the repository
            or revision does not exist or is gated; or the download fails.
    """
    try:
        import huggingface_hub  # noqa: F401
        from huggingface_hub import constants
    except ImportError as e:
        raise CheckpointError(
            f"{repo_id!r} names a Hugging Face repository, which needs huggingface_hub: "
            f"{install_hint('diffusers')}"
        ) from e
    from skiptune import downloads

    where = repo_id + (f" at revision {revision!r}" if revision else "")
    # skiptune's offline mode (--offline, SKIPTUNE_OFFLINE) holds for the hub too.
    cache = constants.HF_HUB_CACHE
    if constants.is_offline_mode() or downloads.is_offline():
        # huggingface_hub read $HF_HUB_OFFLINE when imported: it may be unset since.
        reason = downloads.offline_reason() if downloads.is_offline() else "$HF_HUB_OFFLINE is set"
        return _from_cache(repo_id, revision, missing=(
            f"model {where} is not in the Hugging Face cache ({cache}) and downloads are off "
            f"({reason}), nor a file or folder here; download it once online, point "
            "HF_HOME at a cache that holds it, or pass a path"))
    endpoint = constants.ENDPOINT
    unreachable = (
        f"the Hugging Face hub ({endpoint}) cannot be reached and model {where} is not in its "
        f"cache ({cache}), nor a file or folder here; connect and retry, point HF_HOME at a "
        "cache that holds it (with HF_HUB_OFFLINE=1 or --offline the hub is not tried), or "
        "pass a local folder")
    if not reachable(endpoint):
        return _from_cache(repo_id, revision, missing=unreachable)
    try:
        return _download(repo_id, revision, variant, where=where)
    except Exception as e:
        if not isinstance(e, _transport_errors()):
            raise
        # The hub answered the check but not the call: the cache, as when it is unreachable.
        return _from_cache(repo_id, revision, missing=unreachable)


def reachable(endpoint: str, *, timeout_s: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``endpoint``'s host (or to its proxy) opens within
    ``timeout_s`` seconds, name lookup included."""
    host, port = _first_hop(endpoint)
    if host is None:
        return True                    # nothing to check: let huggingface_hub say what is wrong
    answer: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    # A thread, because a name lookup ignores socket timeouts.
    worker = threading.Thread(target=connect, name="skiptune-hub-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(answer and answer[0])


def _first_hop(endpoint: str) -> tuple[str | None, int]:
    """The host and port a request to ``endpoint`` connects to first: its proxy, if any."""
    url = urllib.parse.urlsplit(endpoint)
    if url.hostname and not urllib.request.proxy_bypass(url.hostname):
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy:
            url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:                 # a port out of range: not ours to judge
        return None, 0
    return url.hostname, port


def _download(repo_id: str, revision: str | None, variant: str | None, *, where: str) -> Path:
    """Fetch what skiptune reads of ``repo_id`` (or find it current in the cache)."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=_patterns(repo_id, revision, variant)
        )
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
            errors.GatedRepoError) as e:
        raise CheckpointError(
            f"cannot fetch model {where} from the Hugging Face hub ({type(e).__name__}); check "
            "the id and revision, and log in (hf auth login or HF_TOKEN) for a private or "
            "gated repository",
            field="revision",
        ) from e
    except (errors.HfHubHTTPError, OSError) as e:
        if isinstance(e, _transport_errors()):
            raise                      # the caller reads the cache
        raise CheckpointError(
            f"cannot fetch model {where} from the Hugging Face hub: "
            f"{' '.join(str(e).split())[:200]}"
        ) from e
    return Path(folder)


def _from_cache(repo_id: str, revision: str | None, *, missing: str) -> Path:
    """The snapshot of ``repo_id`` in the Hugging Face cache, without a hub call; the
    error line ``missing`` when it is not there."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        return Path(huggingface_hub.snapshot_download(
            repo_id, revision=revision, local_files_only=True))
    except errors.LocalEntryNotFoundError as e:
        raise CheckpointError(missing) from e
    except OSError as e:               # an unreadable cache folder, say
        raise CheckpointError(
            f"cannot read model {repo_id!r} from the Hugging Face cache: "
            f"{' '.join(str(e).split())[:200]}"
        ) from e


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors (no connection, timeout) of whichever HTTP client this
    huggingface_hub uses: httpx2 (2.x), httpx (1.x) or requests (0.x)."""
    found: list[type[BaseException]] = []
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        found += [error for name in names
                  if isinstance(error := getattr(loaded, name, None), type)
                  and issubclass(error, BaseException)]
    return tuple(found)


def _patterns(repo_id: str, revision: str | None, variant: str | None) -> list[str] | None:
    """What to download online: configs and one weights file per folder."""
    import huggingface_hub

    files = huggingface_hub.list_repo_files(repo_id, revision=revision)
    return [*_CONFIGS, *weight_files(files, variant)]
