"""What a user's script imports from ``skiptune`` itself: the headline operations and types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import skiptune

HEADLINE = ("load_model", "skip_tuning", "sample", "search", "best_schedule", "export_schedule",
            "load_exported", "RhoSchedule", "SearchConfig", "SearchSpace", "ObjectiveSettings",
            "ObjectiveConfig", "SkiptuneError")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_resolves() -> None:
    for name in skiptune.__all__:
        assert getattr(skiptune, name) is not None, name


def test_the_headline_operations_are_public() -> None:
    assert set(HEADLINE) <= set(skiptune.__all__)
    assert skiptune.search is skiptune.tuner.search


def test_the_readmes_search_script_builds_the_configuration_it_describes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (script,) = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                 if "skiptune.search(" in block]
    received: dict[str, Any] = {}

    def search(model: str, config: skiptune.SearchConfig, **where: Any) -> list[Any]:
        received.update(model=model, config=config, **where)
        return []

    monkeypatch.setattr(skiptune, "search", search)
    exec(compile(script, str(README), "exec"), {})    # the README's own text, as printed
    config = received["config"]
    assert config.budgets == (5, 9) and config.trials == 30
    assert config.space.rho_top == 1.0 and config.objective.rungs == (64, 256)
    assert received["db"] == "skiptune.db"
    assert (Path(__file__).resolve().parents[1] / received["model"]).is_file()
