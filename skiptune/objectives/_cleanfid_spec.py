"""``cleanfid:NAME/SPLIT/RES``, the reference spec naming clean-fid's precomputed statistics.

Parsed with nothing heavier than the standard library, so a configuration checks its spec
when it is built, before a model, a feature network or a download is touched.
"""

from __future__ import annotations

from skiptune._parsing import parse_whole
from skiptune.errors import ConfigurationError

__all__ = ["CLEANFID_PREFIX", "parse_cleanfid_spec"]

CLEANFID_PREFIX = "cleanfid:"


def parse_cleanfid_spec(spec: str) -> tuple[str, str, str]:
    """(name, split, resolution) of ``cleanfid:NAME/SPLIT/RES``; one ConfigurationError line
    for any other form (the resolution in ASCII digits: ``32``, not ``٣٢`` or ``3_2``)."""
    parts = spec.removeprefix(CLEANFID_PREFIX).split("/")
    if len(parts) != 3 or not all(parts) or not _is_resolution(parts[2]):
        raise ConfigurationError(
            f"clean-fid reference {spec[:80]!r} must read cleanfid:NAME/SPLIT/RES, e.g. "
            "cleanfid:cifar10/train/32"
        )
    name, split, resolution = parts
    return name, split, resolution


def _is_resolution(text: str) -> bool:
    try:
        return parse_whole(text) >= 1
    except ConfigurationError:
        return False
