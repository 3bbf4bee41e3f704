"""Shared fixtures: the shipped demonstration model and the MNIST folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CHECKPOINT = REPO_ROOT / "skiptune" / "assets" / "demo_unet.pt"

# No test downloads from beyond 127.0.0.1: a test that would (a missing Inception file, say)
# gets the offline error line instead. The download tests switch it off for their own server.
os.environ["SKIPTUNE_OFFLINE"] = "1"

# Two cores: one thread per test process keeps small-tensor tests fast and predictable.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort, so each group keeps its order): with one test process
    per core, the longest tests start early instead of ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish() -> None:
    from tests import forked

    forked.close()


@pytest.fixture(scope="session")
def demo_model():
    from skiptune.models import load_model

    return load_model(DEMO_CHECKPOINT, device="cpu")
