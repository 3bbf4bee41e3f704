from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tuner.helpers import demo_database


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)      # two shared cores: threads only contend


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search of the demo model at 3 and 5 NFE; read it, never write it."""
    return demo_database(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def several_samplers_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two samplers at two budgets, searched and validated, with grids; read it, never write."""
    from tests.tuner.report_helpers import several_samplers_database

    return several_samplers_database(tmp_path_factory.mktemp("several"))
