"""The one place skiptune reads a user's input files and writes its output files.

Reading (:func:`read_input`, :func:`read_text`): a file that is missing, a folder, unreadable
(permissions, EIO) or, for text, not UTF-8 becomes one :class:`FileAccessError` line naming
the file and what to pass instead; callers parse bytes they know were read whole.

Writing (:func:`write_atomically`): one guarantee for every output (exports, plots, sample
grids, checkpoints): the content goes to a temporary file in the destination's own folder,
is flushed and fsynced, then renamed over the destination, and the folder is fsynced. A
reader sees the old file or the new one, a crash leaves at most a hidden ``.*.partial`` that
the next write does not depend on, and a failure removes the temporary file. A destination
that is not a plain file (a symbolic link, a device node, a FIFO, a folder) is refused:
renaming over it would replace the link or the node by a regular file.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from skiptune.errors import FileAccessError

__all__ = [
    "JSON_MAX_BYTES",
    "JSON_MAX_DEPTH",
    "JSON_MAX_NUMBER_CHARS",
    "PNG_SOFTWARE",
    "check_input_file",
    "check_output_path",
    "read_input",
    "read_json",
    "read_text",
    "save_torch_atomically",
    "sha256_file",
    "write_atomically",
]

JSON_MAX_BYTES = 1 << 20
"""Largest JSON input skiptune reads (bytes): its files are a few kB; the cap keeps memory
bounded by a small constant whatever file is passed."""
JSON_MAX_DEPTH = 32
"""Deepest nesting of arrays and objects in a JSON input; skiptune's files nest 3 deep."""
JSON_MAX_NUMBER_CHARS = 64
"""Longest number literal in a JSON input (characters); a float's repr needs at most 24."""


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _open_regular(target: Path, *, what: str, fix: str, max_bytes: int | None) -> IO[bytes]:
    """``target`` opened for reading if it is a regular file within ``max_bytes``.

    Opened without blocking and checked on the open descriptor: a FIFO swapped in after a
    check can neither hang the open nor be read.
    """
    descriptor = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise FileAccessError(f"{what} {str(target)!r} is a folder; {fix}")
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(
                f"{what} {str(target)!r} is not a regular file (a device, FIFO or socket); {fix}"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise _too_large(target, what=what, fix=fix, max_bytes=max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _input_error(target: Path, error: OSError, *, what: str, fix: str) -> FileAccessError:
    if isinstance(error, FileNotFoundError):
        return FileAccessError(f"{what} {str(target)!r} not found; {fix}")
    # ENAMETOOLONG, EACCES, EIO, ELOOP...: the system's words, then what to do.
    return FileAccessError(f"{what} {str(target)!r} cannot be read ({_reason(error)}); {fix}")


def check_input_file(
    path: str | Path, *, what: str, fix: str, max_bytes: int | None = None
) -> Path:
    """``path`` if it is a regular file (of at most ``max_bytes``), else one FileAccessError
    line, as :func:`read_input` says: for a loader that opens the file by its path."""
    target = Path(path)
    try:
        _open_regular(target, what=what, fix=fix, max_bytes=max_bytes).close()
    except OSError as e:
        raise _input_error(target, e, what=what, fix=fix) from e
    return target


def read_input(
    path: str | Path, *, what: str, fix: str, max_bytes: int | None = None
) -> bytes:
    """All bytes of the input file ``path``; any failure is one FileAccessError line.

    The one bounded reader. ``what`` names the file in the message ("model file", "export
    file"); ``fix`` says what to pass instead. Only a regular file is read: a device
    (``/dev/zero``), a FIFO or a socket (or a link to one) never ends or never holds what a
    file does, so it is refused before any byte is read. ``max_bytes`` caps the size (bytes)
    of an input that is never legitimately large.
    """
    target = Path(path)
    try:
        with _open_regular(target, what=what, fix=fix, max_bytes=max_bytes) as handle:
            # Read one byte past the cap: a file that grew since it was opened is still caught.
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as e:
        raise _input_error(target, e, what=what, fix=fix) from e
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(target, what=what, fix=fix, max_bytes=max_bytes)
    return data


def _too_large(target: Path, *, what: str, fix: str, max_bytes: int) -> FileAccessError:
    return FileAccessError(
        f"{what} {str(target)!r} is larger than the {max_bytes:,} bytes such a file may have; "
        f"{fix}"
    )


def read_text(
    path: str | Path, *, what: str, fix: str, max_bytes: int | None = None
) -> str:
    """The input file ``path`` as UTF-8 text; binary content is one FileAccessError line."""
    data = read_input(path, what=what, fix=fix, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileAccessError(
            f"{what} {str(path)!r} is not text (byte {e.start} is not UTF-8); {fix}"
        ) from e


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (0 for a bare value).

    Counted without parsing (brackets outside strings), so a hostile depth is measured in
    linear time and constant stack, before a recursive parser could exhaust the stack.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = (1 if c in "[{" else -1 for c in brackets)
    return max(itertools.accumulate(steps, initial=0))


def _json_number(kind: type, *, refuse: Callable[[str], FileAccessError]) -> Callable[[str], Any]:
    def parse(literal: str) -> Any:
        if len(literal) > JSON_MAX_NUMBER_CHARS:
            raise refuse(
                f"a number {len(literal):,} characters long (at most {JSON_MAX_NUMBER_CHARS})"
            )
        return kind(literal)

    return parse


def read_json(path: str | Path, *, what: str, fix: str) -> Any:
    """The JSON input file ``path``, parsed strictly within documented limits.

    Refused in one FileAccessError line: more than :data:`JSON_MAX_BYTES` bytes, nesting
    deeper than :data:`JSON_MAX_DEPTH`, a number longer than :data:`JSON_MAX_NUMBER_CHARS`
    characters, ``NaN``/``Infinity`` (not JSON), a key repeated in one object, or text that
    is not JSON.
    """
    text = read_text(path, what=what, fix=fix, max_bytes=JSON_MAX_BYTES)

    def refuse(reason: str) -> FileAccessError:
        return FileAccessError(f"{what} {str(path)!r} is not acceptable JSON: {reason}; {fix}")

    depth = json_depth(text)
    if depth > JSON_MAX_DEPTH:
        raise refuse(f"it nests {depth:,} levels deep (at most {JSON_MAX_DEPTH})")

    def constant(name: str) -> Any:
        raise refuse(f"{name} is not a JSON number")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _value in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise refuse(f"key {repeated[0]!r} appears twice in one object")
        return dict(pairs)

    try:
        return json.loads(
            text,
            parse_int=_json_number(int, refuse=refuse),
            parse_float=_json_number(float, refuse=refuse),
            parse_constant=constant,
            object_pairs_hook=unique,
        )
    except json.JSONDecodeError as e:
        raise refuse(f"{e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:  # the depth check above makes this unreachable; kept as a net
        raise refuse("it nests too deep") from e


PNG_SOFTWARE = ("Software", "skiptune")
"""The text chunk every PNG skiptune writes carries (a grid, a plot): how the writer rule
tells skiptune's PNG from a user's picture."""
PNG_MARK = b"tEXt" + PNG_SOFTWARE[0].encode() + b"\x00" + PNG_SOFTWARE[1].encode()

_OWN_HEAD_BYTES = 1024           # what is read of an existing file to tell what it holds


def _first_member(head: bytes) -> bytes | None:
    """The name of a zip's first member (from its local header), or None: not a zip."""
    if not head.startswith(b"PK\x03\x04") or len(head) < 30:
        return None
    name_length = int.from_bytes(head[26:28], "little")
    return head[30:30 + name_length]


def _npz_starting(first: bytes) -> Callable[[bytes], bool]:
    """An ``.npz`` whose first array is ``first`` (``images.npy`` for sample images,
    ``mu.npy`` for statistics): a user's statistics are never taken for images or back."""
    return lambda head: _first_member(head) == first


def _is_npz(head: bytes) -> bool:
    # A PyTorch checkpoint is a zip too, but its first member is ``<name>/data.pkl``.
    return (_first_member(head) or b"").endswith(b".npy")


def _is_checkpoint(head: bytes) -> bool:
    if head.startswith(b"\x80"):                      # a legacy pickle (protocol 2 and up)
        return True
    return (_first_member(head) or b"").endswith(b"data.pkl")


def _is_safetensors(head: bytes) -> bool:
    return len(head) > 8 and head[8:9] == b"{"


# What an existing file begins with when skiptune wrote it, by the format written (a file
# extension, lower case, or the kind of .npz): only such a file, or an empty one, may be
# replaced. A database, a checkpoint, a picture or a text file the user keeps never starts
# like that.
_OWN_FORMATS: dict[str, Callable[[bytes], bool]] = {
    ".json": lambda head: re.match(rb'\s*\{\s*"format":\s*"skiptune-', head) is not None,
    ".html": lambda head: head.lstrip()[:15].lower() == b"<!doctype html>"
    and b"<title>skiptune" in head,
    ".png": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n") and PNG_MARK in head,
    ".svg": lambda head: head.lstrip().startswith((b"<?xml", b"<svg")),
    ".pdf": lambda head: head.startswith(b"%PDF-"),
    ".npz": _is_npz,
    "images.npz": _npz_starting(b"images.npy"),
    "statistics.npz": _npz_starting(b"mu.npy"),
    ".pt": _is_checkpoint,
    ".safetensors": _is_safetensors,
    ".sha256": lambda head: re.fullmatch(rb"[0-9a-f]{64}\n?", head) is not None,
}
_OWN_FORMATS[".htm"] = _OWN_FORMATS[".html"]
_OWN_FORMATS[".pth"] = _OWN_FORMATS[".ckpt"] = _OWN_FORMATS[".pt"]

_FOUND_KINDS: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda head: head.startswith(b"SQLite format 3\x00"), "a SQLite database"),
    (_is_checkpoint, "a model checkpoint"),
    (_is_safetensors, "a safetensors file"),
    (_is_npz, "NumPy arrays of another kind"),
    (lambda head: head.startswith(b"PK\x03\x04"), "a zip archive"),
    (lambda head: head.startswith(b"\x89PNG"), "a PNG image skiptune did not write"),
)


def _found_kind(head: bytes) -> str:
    """What an existing file is, in words, for the refusal to replace it."""
    return next((kind for test, kind in _FOUND_KINDS if test(head)), "a file skiptune did not "
                "write in this format")


def _head(target: Path) -> bytes:
    with target.open("rb") as handle:
        return handle.read(_OWN_HEAD_BYTES)


def _refuse_replacing(target: Path, *, writes: str, reading: Sequence[str | Path]) -> None:
    """The writer rule: refuse to replace an input of the command, or a non-empty file that
    is not one skiptune writes in the format ``writes`` (a database, a checkpoint...)."""
    for source in reading:
        with contextlib.suppress(OSError):
            if os.path.samefile(source, target):
                raise FileAccessError(
                    f"cannot write {str(target)!r}: it is an input of this command; pass "
                    "another output path"
                )
    try:
        head = _head(target)
    except OSError as e:
        raise FileAccessError(f"cannot write {str(target)!r} ({_reason(e)})") from e
    own = _OWN_FORMATS.get(writes)
    if head and (own is None or not own(head)):
        raise FileAccessError(
            f"cannot write {str(target)!r}: it already holds {_found_kind(head)}, which "
            "skiptune will not replace; pass a new file name, or delete the file first if "
            "it is not needed"
        )


def check_output_path(
    path: str | Path,
    *,
    suffixes: Sequence[str] | None = None,
    writes: str | None = None,
    reading: Sequence[str | Path] = (),
) -> Path:
    """Refuse, in one line, an output path that cannot be replaced atomically or safely.

    ``suffixes`` (lower case, with the dot) are the extensions the writer can produce; any
    other is refused with the list. The writer rule, shared by every command that writes a
    file: an existing file is replaced only if it is empty or was written by skiptune in the
    format written now (``writes``: an extension such as ".json", or "images.npz" or
    "statistics.npz"; default the path's own), never a database, a checkpoint or any file of
    another kind, and never a file the command reads (``reading``: its input paths). Call it
    before long work, so a bad ``-o`` fails first.
    """
    target = Path(path)
    try:
        info = target.lstat()
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise FileAccessError(f"cannot write {str(target)!r} ({_reason(e)})") from e
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise FileAccessError(
                f"cannot write {str(target)!r}: it is a folder; pass a file name inside it, "
                f"e.g. {str(target / ('output' + (suffixes[0] if suffixes else '')))!r}"
            )
        if stat.S_ISLNK(info.st_mode):
            raise FileAccessError(
                f"cannot write {str(target)!r}: it is a symbolic link, which an atomic write "
                "would replace by a plain file; pass the link's target path instead"
            )
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(
                f"cannot write {str(target)!r}: it is not a regular file (a device, FIFO or "
                "socket); pass a file path"
            )
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise FileAccessError(
            f"cannot write {str(target)!r}: unsupported extension "
            f"{target.suffix or '(none)'!r}; use one of {', '.join(suffixes)}"
        )
    if not target.parent.is_dir():
        raise FileAccessError(
            f"cannot write {str(target)!r}: its folder {str(target.parent)!r} does not exist; "
            "create it or pass another path"
        )
    if info is not None:
        _refuse_replacing(target, writes=writes or target.suffix.lower(), reading=reading)
    return target


def _mode_for(target: Path) -> int:
    """The mode the file gets: the replaced file's, else what ``open`` would give (umask)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    # The rename is durable once the folder's entry is; some file systems cannot fsync a
    # folder (EINVAL), and the data itself is already on disk then.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(
    path: str | Path,
    write: Callable[[IO[bytes]], Any] | bytes,
    *,
    suffixes: Sequence[str] | None = None,
    writes: str | None = None,
) -> Path:
    """Write ``path`` atomically: temp file beside it, fsync, rename, fsync the folder.

    ``write`` is the content, or a function that writes it to the binary handle it is given.
    Refuses (FileAccessError, nothing written) a destination that is a folder, a symbolic
    link or not a regular file, whose extension is not in ``suffixes``, or that the writer
    rule of :func:`check_output_path` keeps (a file of another kind than ``writes``). Any
    failure removes the temporary file and leaves the destination as it was.
    """
    target = check_output_path(path, suffixes=suffixes, writes=writes)
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
        )
    except OSError as e:
        raise FileAccessError(f"cannot write {str(target)!r} ({_reason(e)})") from e
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(write, bytes):
                handle.write(write)
            else:
                write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as e:
        raise FileAccessError(f"cannot write {str(target)!r} ({_reason(e)})") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_folder(target.parent)
    return target


def save_torch_atomically(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` through :func:`write_atomically`: a crash never leaves half a checkpoint."""
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(target, lambda handle: torch.save(payload, handle), writes=".pt")


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large weights need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
