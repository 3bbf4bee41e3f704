"""How to install an optional part of skiptune, said the same way by every message.

skiptune is not on PyPI, so ``pip install 'skiptune[sd]'`` would find nothing: an extra is
installed from a clone's folder, as the README's install section says.
"""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (``sd``, ``diffusers``, ``plot``…) from a clone."""
    return f"pip install '.[{extra}]' in a clone of skiptune"
