from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.helpers import kill_launched


@pytest.fixture(autouse=True)
def _no_search_outlives_its_test() -> Iterator[None]:
    # A failed assertion or a timeout must not leave a search running on the shared cores.
    yield
    kill_launched()
