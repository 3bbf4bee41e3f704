"""The Dockerfile's settings that a user meets first (the suite does not build the image)."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def _env() -> dict[str, str]:
    """NAME=value of the Dockerfile's ENV instructions (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = [pair for line in text.splitlines() if line.startswith("ENV ")
             for pair in line[4:].split()]
    return dict(pair.split("=", 1) for pair in pairs)


def test_downloads_are_on_and_cached_on_the_volume() -> None:
    env = _env()
    assert "HF_HUB_OFFLINE" not in env and "SKIPTUNE_OFFLINE" not in env
    assert env["HF_HOME"].startswith("/data/") and env["SKIPTUNE_CACHE_DIR"].startswith("/data/")
    assert 'VOLUME ["/data"]' in DOCKERFILE.read_text()


def test_hub_ids_can_load() -> None:
    (extras,) = re.findall(r'"/src\[([\w,]+)\]"', DOCKERFILE.read_text())
    assert "diffusers" in extras.split(",")
