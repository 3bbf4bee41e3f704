"""How to install or upgrade skiptune, said the same way by every message.

skiptune is not on PyPI, so a bare ``pip install`` of it finds nothing: an extra is installed
from a clone's folder, as the README's install section says.
"""

from __future__ import annotations

__all__ = ["UPGRADE_HINT", "install_hint"]

UPGRADE_HINT = "git pull in skiptune's clone, then pip install . there"


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (``sd``, ``diffusers``, ``plot``…) from a clone."""
    return f"pip install '.[{extra}]' in a clone of skiptune"
