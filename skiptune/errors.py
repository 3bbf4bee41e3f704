"""The one exception base of skiptune and its subclasses.

Every error a user can cause derives from :class:`SkiptuneError`; its message is one
line that says what was received and what to do instead. The CLI catches this base
alone and renders it without a traceback. :func:`first_line` is how a foreign error (a
loader's, a driver's) is quoted inside such a line.
"""

from __future__ import annotations

from collections.abc import Sequence

from skiptune._secrets import mask_secrets

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DownloadError",
    "FileAccessError",
    "InsufficientMemoryError",
    "ModelError",
    "NoSkiptuneDatabaseError",
    "NonFiniteSampleError",
    "OfflineError",
    "SkiptuneError",
    "StorageError",
]


class SkiptuneError(Exception):
    """Base of every error skiptune raises on purpose.

    ``field`` names what a caller passes that the message speaks of: a configuration field's
    dotted path (``validation.top_k``, ``objective.reference``) or a keyword argument
    (``device``, ``db``), spelled in the message as it is here (a boolean as ``name=True``),
    so that the command line can put its own flag in its place. Several fields are a
    sequence, the one the error is about first; ``fields`` holds them all, ``field`` the
    first (None when the message names none).
    """

    def __init__(self, message: str = "", *, field: str | Sequence[str] | None = None) -> None:
        # Every message is masked here, at the one base: a URL's password or token quoted
        # by a loader, a driver or a download never reaches a terminal or a log.
        super().__init__(mask_secrets(message))
        self.fields: tuple[str, ...] = (field,) if isinstance(field, str) else tuple(field or ())
        self.field: str | None = self.fields[0] if self.fields else None


class ConfigurationError(SkiptuneError, ValueError):
    """A parameter, option or combination of them is invalid."""


class CheckpointError(SkiptuneError):
    """A model file or folder cannot be loaded safely as a checkpoint."""


class FileAccessError(SkiptuneError):
    """An input file cannot be read, or an output file cannot be written safely."""


class DownloadError(SkiptuneError):
    """A file cannot be fetched into skiptune's cache, or its cached copy cannot be trusted."""


class OfflineError(DownloadError, ConfigurationError):
    """Offline, and a file that would be downloaded is not in the cache: the user must put it
    there (or name a local copy), so it is also a configuration error."""


class InsufficientMemoryError(SkiptuneError):
    """The device ran out of memory even at the smallest batch (one image)."""


class ModelError(SkiptuneError):
    """The model's own code failed while it ran (an adapter's denoise raised)."""


class NonFiniteSampleError(SkiptuneError):
    """Sampling produced NaN or infinite values."""


class StorageError(SkiptuneError):
    """The study database cannot be opened, read or written."""


class NoSkiptuneDatabaseError(StorageError):
    """A read found no skiptune database there: no file, an empty one, or no skiptune tables."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s stripped text; its type's name when the text is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
