"""Fetch a file once into skiptune's checked cache, or refuse in one line when offline.

Models given by URL, clean-fid's Inception weights and its reference statistics, and
``--ref`` URLs all come through :func:`fetch`:

* the file is streamed into ``<cache>/downloads/.partial/``, fsynced, checked, and only then
  renamed to its entry ``<cache>/downloads/<hash of the URL>/<file name>``: an entry is
  always a whole file, and a download that fails or is killed leaves no entry, nor does an
  HTML page (whatever its Content-Type) or a body sent encoded (gzip...). Partial files
  of dead processes are removed by the next fetch and are never looked up;
* the SHA-256 of every entry is recorded beside it (``<file name>.sha256``) and checked before
  each reuse: a cached file that no longer matches is refused, not used;
* a ``#sha256=<hex>`` suffix on the URL (or ``sha256=``) pins the expected file, checked on
  download and on reuse;
* offline (``offline=True``, ``$SKIPTUNE_OFFLINE=1`` or ``$HF_HUB_OFFLINE=1``) nothing is
  downloaded: a missing file is one error line naming it, its URL and the exact path to put
  it at.

The library never prints: progress goes to a callback (``progress=``, or the one installed
with :func:`report_progress`), which the command line draws as a bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import platform
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from skiptune._files import read_text, sha256_file, write_atomically
from skiptune._secrets import has_userinfo, mask_secrets
from skiptune.errors import ConfigurationError, DownloadError, OfflineError, first_line

__all__ = [
    "CACHE_DIR_ENV",
    "OFFLINE_ENV",
    "DownloadProgress",
    "ProgressCallback",
    "bad_file_fix",
    "cache_dir",
    "entry_path",
    "fetch",
    "is_offline",
    "is_url",
    "offline_mode",
    "offline_reason",
    "report_progress",
    "split_pin",
]

CACHE_DIR_ENV = "SKIPTUNE_CACHE_DIR"
OFFLINE_ENV = "SKIPTUNE_OFFLINE"
_OFFLINE_WHY_ENV = "SKIPTUNE_OFFLINE_WHY"  # offline_mode's reason, for its worker processes
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
"""Hugging Face's switch: a user offline for the hub is offline for skiptune too."""

DOWNLOADS_FOLDER = "downloads"
PARTIAL_FOLDER = ".partial"
RECORD_SUFFIX = ".sha256"
TIMEOUT_S = 30.0
"""Seconds without a byte from the server before a download is given up."""
DEADLINE_S = 6 * 3600.0
"""Seconds a whole download may take (a server dripping bytes is given up at the latest then)."""
SLOW_WINDOW_S = 60.0
SLOW_WINDOW_BYTES = 64 * 1024
"""A download that receives fewer than 64 KiB in any 60 s is given up: a dripping server."""
MAX_DOWNLOAD_BYTES = 64 * 1024**3
"""The largest file a download accepts, 64 GiB (SDXL's weights are under 7 GB): a larger
Content-Length, or a longer body, is refused."""
FREE_DISK_MARGIN_BYTES = 256 * 1024**2
"""Free space a download leaves on the cache's disk beyond the file it announces."""

_CHUNK_BYTES = 1 << 20
_FOREIGN_PARTIAL_AGE_S = 24 * 3600   # another machine's partial file: surely dead by then
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_PIN = re.compile(r"sha256=([0-9A-Fa-f]{64})")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_RECORD_MAX_BYTES = 128          # a record is 64 hex digits and a newline


@dataclass(frozen=True, kw_only=True)
class DownloadProgress:
    """One step of a download, for a progress bar.

    Attributes:
        url: the URL (without its ``#sha256=`` pin).
        name: the file's name, for a label.
        done: bytes received so far.
        total: bytes announced by the server (Content-Length), or None.
        finished: True once, when the file is whole, checked and in the cache.
    """

    url: str
    name: str
    done: int
    total: int | None
    finished: bool = False


ProgressCallback = Callable[[DownloadProgress], None]

_reporter: list[ProgressCallback] = []


# --- Where --------------------------------------------------------------------------------


def _user_cache_folder() -> Path:
    """The platform's folder for a user's caches (what platformdirs calls user_cache_dir)."""
    system = platform.system()
    if system == "Windows":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if system == "Darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def cache_dir() -> Path:
    """skiptune's cache folder: ``$SKIPTUNE_CACHE_DIR``, else ``skiptune`` in the platform's
    user cache folder (``~/.cache`` or ``$XDG_CACHE_HOME`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else _user_cache_folder() / "skiptune"


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` is an ``http://`` or ``https://`` URL (what :func:`fetch` takes)."""
    return isinstance(text, str) and text[:8].lower().startswith(("http://", "https://"))


def split_pin(url: str) -> tuple[str, str | None]:
    """``(URL without fragment, pinned SHA-256 or None)``; a malformed pin is refused."""
    base, _, fragment = url.partition("#")
    if not fragment:
        return base, None
    match = _PIN.fullmatch(fragment)
    if match is None:
        raise ConfigurationError(
            f"URL {url!r} ends in '#{fragment[:40]}', which is not a pin; write "
            "#sha256=<64 hex digits> to pin the file, or leave the fragment out"
        )
    return base, match.group(1).lower()


def _file_name(url: str) -> str:
    """A safe file name from the URL's last path segment: no separators, no leading dot."""
    last = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", last).lstrip(".")
    if len(name) > 120:
        stem, dot, suffix = name.rpartition(".")
        keep = dot and len(suffix) < 16         # keep a short extension: loaders look at it
        name = stem[: 119 - len(suffix)] + dot + suffix if keep else name[:120]
    return name or "download"


def entry_path(url: str) -> Path:
    """Where the file of ``url`` lives in the cache, whatever the URL holds.

    ``<cache>/downloads/<first 16 hex of SHA-256(URL)>/<sanitised file name>``: the hash
    keeps URLs apart and the sanitised name keeps the path inside the cache (no ``..``, no
    separators) while the file keeps a name that says what it is (and the study group
    derived from it is the file's stem, as for a local path).
    """
    base, _ = split_pin(url)
    key = hashlib.sha256(base.encode("utf-8")).hexdigest()[:16]
    return cache_dir() / DOWNLOADS_FOLDER / key / _file_name(base)


def _record_path(entry: Path) -> Path:
    return entry.with_name(entry.name + RECORD_SUFFIX)


def bad_file_fix(path: str | os.PathLike[str], fix: str) -> str:
    """What to do about an input file a loader found damaged or not of its kind.

    ``fix`` (e.g. "copy it again") for the user's own file. A download-cache entry, though,
    is whole as the server sent it and is reused as long as it matches its checksum, so
    copying or downloading "again" changes nothing: the fix is to delete it.
    """
    try:
        folder = Path(path).expanduser().resolve().parent
        inside = folder.parent == (cache_dir() / DOWNLOADS_FOLDER).resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        return fix
    return (f"it is skiptune's download of a URL, whole as the server sent it: delete {folder} "
            "to download it again, and check the URL if the same file comes back")


# --- Offline and progress -----------------------------------------------------------------


def is_offline() -> bool:
    """Whether downloads are off: ``$SKIPTUNE_OFFLINE`` or ``$HF_HUB_OFFLINE`` is 1/true/yes/on.

    Raises:
        ConfigurationError: ``$SKIPTUNE_OFFLINE`` holds another value than 1/true/yes/on,
            0/false/no/off or nothing (``maybe`` must not silently mean online).
    """
    own = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if own not in _TRUE | _FALSE:
        raise ConfigurationError(
            f"${OFFLINE_ENV} is {os.environ[OFFLINE_ENV][:40]!r}, which is neither on (1, true, "
            "yes, on) nor off (0, false, no, off); set one of those, or unset it"
        )
    return own in _TRUE or os.environ.get(HF_OFFLINE_ENV, "").strip().lower() in _TRUE


_switched_on_by: list[str] = []        # the ``why`` of each offline_mode block now open


@contextlib.contextmanager
def offline_mode(enabled: bool = True, *, why: str = "offline_mode()") -> Iterator[None]:
    """Within the block, nothing is downloaded (``enabled=False`` changes nothing).

    Sets ``$SKIPTUNE_OFFLINE`` for the block, so worker processes started inside it are
    offline too; the previous value is restored after. ``why`` is what a refusal names as
    the reason (the command line passes ``--offline``), not the variable set here, in the
    workers too (``$SKIPTUNE_OFFLINE_WHY`` carries it to them).
    """
    if not enabled:
        yield
        return
    previous = {name: os.environ.get(name) for name in (OFFLINE_ENV, _OFFLINE_WHY_ENV)}
    os.environ[OFFLINE_ENV] = "1"
    os.environ[_OFFLINE_WHY_ENV] = why
    _switched_on_by.append(why)
    try:
        yield
    finally:
        _switched_on_by.pop()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def report_progress(callback: ProgressCallback | None) -> Iterator[None]:
    """Within the block, fetches that were given no ``progress=`` report to ``callback``."""
    if callback is None:
        yield
        return
    _reporter.append(callback)
    try:
        yield
    finally:
        _reporter.remove(callback)


# --- The cache's checks -------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True          # EPERM: it exists, under another user
    return True


def _is_stale(partial: Path, host: str) -> bool:
    """A partial file whose writer is gone: a dead process here, or an old one elsewhere."""
    pid_text, _, rest = partial.name.partition(".")
    owner = rest.partition(".")[2].removesuffix(".partial")
    if owner == host and pid_text.isdigit() and sys.platform != "win32":
        return not _pid_alive(int(pid_text))
    try:
        return time.time() - partial.stat().st_mtime > _FOREIGN_PARTIAL_AGE_S
    except OSError:
        return False


def _remove_stale_partials(folder: Path) -> None:
    if not folder.is_dir():
        return
    host = _host()
    for partial in folder.iterdir():
        if _is_stale(partial, host):
            with contextlib.suppress(OSError):
                partial.unlink()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname()) or "host"


def _checked_entry(entry: Path, *, url: str, what: str, pinned: bool) -> str | None:
    """The SHA-256 of the cached ``entry``, checked against its record; None when absent.

    An entry without a record was put there by hand (or its process died between the rename
    and the record): every entry is a whole file, so its hash is recorded now. A record that
    no longer matches means the file changed after it was cached: refused, unless the URL is
    ``pinned``: then the pin, not the record, decides whether the entry is used or
    downloaded again.
    """
    if not entry.is_file():
        return None
    actual = sha256_file(entry)
    record = _record_path(entry)
    if not os.path.lexists(record):
        write_atomically(record, f"{actual}\n".encode("ascii"))
        return actual
    if pinned:
        return actual
    recorded = _recorded_sha256(record, entry=entry, url=url, what=what)
    if recorded != actual:
        raise DownloadError(
            f"cached {what} {entry} no longer matches the SHA-256 recorded when it was cached "
            f"({recorded[:12]}…, now {actual[:12]}…): it was changed or damaged; delete it to "
            f"download {url} again"
        )
    return actual


def _recorded_sha256(record: Path, *, entry: Path, url: str, what: str) -> str:
    """The SHA-256 a checksum record holds, read as untrusted input: through the bounded
    reader (a regular file of at most a line), and only ever 64 hex digits. Anything else is
    refused without showing what the file holds (it may be a link to any file)."""
    fix = f"delete {entry} and {record} to download {url} again"
    text = read_text(record, what=f"checksum record of cached {what}", fix=fix,
                     max_bytes=_RECORD_MAX_BYTES)
    recorded = text.strip().lower()
    if _SHA256_HEX.fullmatch(recorded) is None:
        raise DownloadError(
            f"checksum record {record} of cached {what} does not hold a SHA-256 (64 hex "
            f"digits); {fix}"
        )
    return recorded


# --- The download -------------------------------------------------------------------------


def _offline_error(
    *, what: str, url: str, entry: Path, reason: str, alternative: str | None
) -> OfflineError:
    return OfflineError(
        f"offline ({reason}): {what} {entry.name} is not in skiptune's cache; download {url} "
        f"and put it at {entry}{', ' + alternative if alternative else ''}, or run once "
        "without offline mode"
    )


def offline_reason() -> str:
    """The switch that made skiptune offline, as messages name it (``--offline was given``,
    ``$SKIPTUNE_OFFLINE is set``, ``$HF_HUB_OFFLINE is set``, else ``offline=True``)."""
    if _switched_on_by:                 # its $SKIPTUNE_OFFLINE is not the user's
        return f"{_switched_on_by[-1]} was given"
    inherited = os.environ.get(_OFFLINE_WHY_ENV)
    if inherited and os.environ.get(OFFLINE_ENV) == "1":    # a worker of an offline_mode block
        return f"{inherited[:40]} was given"
    for name in (OFFLINE_ENV, HF_OFFLINE_ENV):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"${name} is set"
    return "offline=True"


def _open(url: str, timeout: float) -> IO[bytes]:
    from skiptune._version import skiptune_version

    agent = f"skiptune/{skiptune_version()}"
    # The file's own bytes: a body sent gzip-encoded would be cached as gzip (_content_problem).
    request = urllib.request.Request(url, headers={"User-Agent": agent,
                                                  "Accept-Encoding": "identity"})
    response: IO[bytes] = urllib.request.urlopen(request, timeout=timeout)
    return response


_PAGE = "the server answered with an HTML page, not the file"
_SNIFF_BYTES = 1024
# How an HTML page starts (after a byte-order mark, blanks, comments), whatever its
# Content-Type says; no file fetched here (zip, pickle, .npz, TorchScript) starts so.
_HTML_START = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
    re.IGNORECASE | re.DOTALL,
)


def _content_problem(response: IO[bytes]) -> str | None:
    """Why the headers say the answer is not the file: an HTML page (a login, an error or a
    landing page), or a body encoded (gzip...) that would be cached as the file."""
    headers = getattr(response, "headers", None)
    kind = (headers.get("Content-Type", "") if headers is not None else "").lower()
    if kind.startswith("text/html"):
        return _PAGE
    encoding = (headers.get("Content-Encoding", "") if headers is not None else "").strip()
    if encoding.lower() not in ("", "identity"):
        return (f"the server sent the file encoded (Content-Encoding: {encoding[:40]}), which "
                "skiptune does not decode; download it with a client that decodes it (a "
                "browser, or curl asked to decompress) and pass its path")
    return None


def _body_problem(partial: Path) -> str | None:
    """Why the body is not the file: an HTML page served under another Content-Type."""
    with partial.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    return _PAGE if _HTML_START.match(head) else None


@dataclass(frozen=True, kw_only=True)
class _Limits:
    """How long and how large one download may be (:func:`fetch`'s arguments)."""

    timeout: float                      # seconds without a byte
    deadline: float                     # seconds for the whole download
    max_bytes: int                      # the largest body accepted


def _declared_length(response: IO[bytes]) -> int | None:
    headers = getattr(response, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return int(length) if length is not None and length.isdigit() else None


def _check_room(total: int | None, *, folder: Path, limits: _Limits) -> None:
    """Refuse a declared size above the limit, or one the cache's disk has no room for."""
    if total is None:
        return
    if total > limits.max_bytes:
        raise DownloadError(
            f"the server announces {total:,} bytes, above the {limits.max_bytes:,} bytes a "
            "download may be; check the URL, or download the file yourself and pass its path"
        )
    free = shutil.disk_usage(folder).free
    if total + FREE_DISK_MARGIN_BYTES > free:
        raise DownloadError(
            f"the server announces {total:,} bytes but the cache's disk ({folder}) has "
            f"{free:,} bytes free; free some space or set ${CACHE_DIR_ENV} to a larger disk"
        )


class _Clock:
    """The download's deadline and its slow-server check, fed the bytes as they arrive."""

    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.start = self.window_start = time.monotonic()
        self.window_bytes = 0

    def tick(self, received: int) -> None:
        now = time.monotonic()
        if now - self.start > self.limits.deadline:
            raise DownloadError(
                f"the download took longer than {self.limits.deadline:g} s; check the network, "
                "or download the file yourself and pass its path"
            )
        self.window_bytes += received
        if now - self.window_start >= SLOW_WINDOW_S:
            if self.window_bytes < SLOW_WINDOW_BYTES:
                raise DownloadError(
                    f"the server sent {self.window_bytes:,} bytes in {now - self.window_start:.0f}"
                    " s, too slow to finish; check the network, or download the file yourself"
                )
            self.window_start, self.window_bytes = now, 0


def _stream(
    response: IO[bytes],
    handle: IO[bytes],
    *,
    url: str,
    name: str,
    progress: ProgressCallback | None,
    limits: _Limits,
) -> tuple[str, int]:
    """Copy the body to ``handle``; (SHA-256, bytes). A short or overlong body is an error."""
    total = _declared_length(response)
    _check_room(total, folder=Path(handle.name).parent, limits=limits)
    clock = _Clock(limits)
    digest = hashlib.sha256()
    done = 0
    # read1: what has arrived, so progress moves (read(n) would wait for all n bytes).
    read = getattr(response, "read1", response.read)
    while chunk := read(_CHUNK_BYTES):
        handle.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if done > limits.max_bytes:
            raise DownloadError(
                f"the body passed {limits.max_bytes:,} bytes, the most a download may be; "
                "check the URL, or download the file yourself and pass its path"
            )
        clock.tick(len(chunk))
        if progress is not None:
            progress(DownloadProgress(url=url, name=name, done=done, total=total))
    if total is not None and done != total:
        raise DownloadError(f"the connection ended after {done} of {total} bytes")
    if done == 0:
        raise DownloadError("the server sent an empty file")
    return digest.hexdigest(), done


def _download(
    url: str, entry: Path, *, expected: str | None, progress: ProgressCallback | None,
    limits: _Limits,
) -> str:
    """Download ``url`` to ``entry`` through a partial file; the SHA-256 of what was written."""
    partials = entry.parent.parent / PARTIAL_FOLDER
    partials.mkdir(parents=True, exist_ok=True)
    partial = partials / f"{os.getpid()}.{uuid.uuid4().hex[:12]}.{_host()}.partial"
    try:
        with _open(url, limits.timeout) as response, partial.open("wb") as handle:
            problem = _content_problem(response)
            if problem is not None:
                raise DownloadError(problem)
            actual, _size = _stream(response, handle, url=url, name=entry.name,
                                    progress=progress, limits=limits)
            handle.flush()
            os.fsync(handle.fileno())
        problem = _body_problem(partial)
        if problem is not None:
            raise DownloadError(problem)
        if expected is not None and actual != expected:
            raise DownloadError(
                f"the file's SHA-256 is {actual}, not the pinned {expected}: the file at the "
                "URL is not the one pinned; check the URL, or update the pin if the change "
                "is expected"
            )
        entry.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, entry)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    write_atomically(_record_path(entry), f"{actual}\n".encode("ascii"))
    return actual


def _failure_reason(error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            return f"no answer within {timeout:g} s"
        return first_line(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no data for {timeout:g} s"
    if isinstance(error, http.client.HTTPException):
        return f"the server's answer is not valid HTTP: {type(error).__name__}"
    return first_line(error)


def fetch(
    url: str,
    *,
    sha256: str | None = None,              # expected SHA-256 (hex); or #sha256= on the URL
    offline: bool | None = None,            # None: is_offline() (the environment)
    progress: ProgressCallback | None = None,  # None: the report_progress callback, if any
    what: str = "file",                     # names the file in messages ("model", ...)
    alternative: str | None = None,         # another way to provide it, for the offline line
    timeout: float = TIMEOUT_S,             # seconds without data before giving up
    deadline: float = DEADLINE_S,           # seconds the whole download may take
    max_bytes: int = MAX_DOWNLOAD_BYTES,    # the largest file accepted
) -> Path:
    """The local path of ``url``'s file, downloaded once into the cache and checked each use.

    Args:
        url: an ``http(s)://`` URL, optionally ending in ``#sha256=<hex>``.
        sha256: the expected SHA-256; with a pin on the URL too, both must agree.
        offline: refuse to download; a file already cached is still used.
        progress: called with a :class:`DownloadProgress` per chunk and once at the end.
        what: what the file is, for messages.
        alternative: another way to provide the file, added to the offline error (e.g. "or
            set $SKIPTUNE_INCEPTION_WEIGHTS to its path").
        timeout: seconds to wait for the server's next bytes.
        deadline: seconds the whole download may take; a server sending less than 64 KiB in
            a minute is given up sooner.
        max_bytes: the largest file accepted; a larger Content-Length is refused before the
            body is read, as is one the cache's disk has no room for.

    Returns:
        The cached file (:func:`entry_path`), whole and matching its recorded SHA-256 (and the
        pin).

    Raises:
        OfflineError: offline and not cached (a DownloadError and a ConfigurationError).
        DownloadError: the download failed (HTTP error, an answer that is not HTTP, timeout,
            deadline, too large, connection cut, an HTML page instead of the file whatever
            its Content-Type, a body sent encoded) or does not match the pin; or the cached
            file of an unpinned URL no longer matches its recorded SHA-256 (a pinned one
            that does not match its pin is downloaded again).
        ConfigurationError: ``url`` is not an http(s) URL, or its pin is malformed.
    """
    if not is_url(url):
        raise ConfigurationError(f"{what} {url!r} is not an http:// or https:// URL")
    base, pinned = split_pin(url)
    if sha256 is not None and pinned is not None and sha256.lower() != pinned:
        raise ConfigurationError(
            f"{what} {base}: the URL pins sha256 {pinned[:12]}… but {sha256[:12]}… was also "
            "given; give one"
        )
    expected = (sha256 or pinned or "").lower() or None
    entry = entry_path(base)
    offline = is_offline() if offline is None else offline
    progress = progress if progress is not None else (_reporter[-1] if _reporter else None)
    _remove_stale_partials(entry.parent.parent / PARTIAL_FOLDER)
    cached = _checked_entry(entry, url=base, what=what, pinned=expected is not None)
    if cached is not None and (expected is None or cached == expected):
        return entry
    if offline:
        if cached is not None:
            raise DownloadError(
                f"offline ({offline_reason()}): cached {what} {entry} has SHA-256 "
                f"{cached[:12]}…, not the pinned {expected}; download {base} again without "
                "offline mode, or fix the pin"
            )
        raise _offline_error(what=what, url=base, entry=entry, reason=offline_reason(),
                             alternative=alternative)
    if has_userinfo(base):
        raise ConfigurationError(
            f"{what} URL {mask_secrets(base)} carries a user name or password before its host, "
            "which skiptune's downloader cannot send (it would take them for the host name); "
            f"download the file yourself and put it at {entry}, or pass a URL that needs no "
            "credentials"
        )
    limits = _Limits(timeout=timeout, deadline=deadline, max_bytes=max_bytes)
    try:
        _download(base, entry, expected=expected, progress=progress, limits=limits)
    except DownloadError as e:
        raise DownloadError(f"cannot download {what} {base}: {e}") from None
    # URLError, HTTPError, timeouts, a full disk; a malformed answer (BadStatusLine,
    # IncompleteRead) is an HTTPException, which is not an OSError.
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise DownloadError(
            f"cannot download {what} {base} ({_failure_reason(e, timeout)}); check the URL "
            f"and the network, or put the file at {entry} and run offline"
        ) from e
    if progress is not None:
        size = entry.stat().st_size
        progress(DownloadProgress(url=base, name=entry.name, done=size, total=size,
                                  finished=True))
    return entry
