"""What a user's script imports from ``skiptune`` itself: the headline operations and types."""

from __future__ import annotations

import skiptune

HEADLINE = ("load_model", "skip_tuning", "sample", "search", "best_schedule", "export_schedule",
            "load_exported", "RhoSchedule", "SearchSpace", "ObjectiveConfig", "SkiptuneError")


def test_every_public_name_resolves() -> None:
    for name in skiptune.__all__:
        assert getattr(skiptune, name) is not None, name


def test_the_headline_operations_are_public() -> None:
    assert set(HEADLINE) <= set(skiptune.__all__)
    assert skiptune.search is skiptune.tuner.search
