"""Property tests of the command line's comma lists and ranges (hypothesis).

``skiptune-search`` runs through typer's CliRunner with the search itself replaced by a
recorder, so each example costs milliseconds: valid lists reach the library as the numbers
typed, malformed ones are usage errors (exit 2), a well-formed but impossible range is the
library's one-line error (exit 1), and nothing ever ends in a traceback.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from skiptune import cli, tuner
from skiptune.objectives import ObjectiveSettings
from skiptune.schedule import SHAPES

runner = CliRunner()
FAST = settings(max_examples=60, deadline=None)


def invoke(*argv: str) -> tuple[Any, dict[str, Any]]:
    """Run ``skiptune-search --model m.pt ARGV --quiet``; returns the result and what search got."""
    received: dict[str, Any] = {}

    def record(model: str, config: tuner.SearchConfig, **kwargs: Any) -> list[Any]:
        received.update(model=model, config=config, **kwargs)
        return []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuner, "search", record)
        result = runner.invoke(cli.search_app, ["--model", "m.pt", *argv, "--quiet"])
    # Never an exception out of the command: at most the SystemExit that carries the code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result, received


def joined(items: list[str], separators: st.DataObject) -> str:
    """Items joined by commas with optional spaces around them, as people type lists."""
    text = items[0]
    for item in items[1:]:
        text += separators.draw(st.sampled_from([",", ", ", " ,", " , "])) + item
    return text


def not_a_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return True
    return False


rungs = st.lists(st.integers(2, 10**7), min_size=1, max_size=6, unique=True).map(sorted)
bounds = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
# Tokens with no comma that float() (hence int()) refuses: letters, stray signs, 1.2.3 …
junk = st.text(st.characters(exclude_characters=",", exclude_categories=("Cs",)),
               min_size=1, max_size=8).filter(lambda t: t.strip() and not_a_number(t))


@FAST
@given(rungs, st.data())
def test_valid_rungs_reach_the_objective_as_typed(values: list[int], data: st.DataObject) -> None:
    result, received = invoke("--nfe", "9", "--rungs", joined([str(v) for v in values], data),
                              "--allow-large-rungs")
    assert result.exit_code == 0, result.output
    assert received["config"].objective == ObjectiveSettings(rungs=tuple(values))


@FAST
@given(bounds, bounds, st.data())
def test_a_range_is_taken_exactly_or_refused_in_one_line(low: float, high: float,
                                                         data: st.DataObject) -> None:
    flag = data.draw(st.sampled_from(["--rho-bottom-range", "--rho-top-range"]))
    result, received = invoke("--nfe", "9", flag, joined([repr(low), repr(high)], data))
    if low < high:
        assert result.exit_code == 0, result.output
        space = received["config"].space
        assert (space.rho_bottom if flag == "--rho-bottom-range" else space.rho_top) == (
            low, high)                                  # repr round-trips floats exactly
    else:
        assert result.exit_code == 1 and "0 ≤ low < high" in result.stderr


@FAST
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2))
def test_a_non_finite_bound_is_refused_in_one_line(pair: list[float]) -> None:
    result, _ = invoke("--nfe", "9", "--rho-bottom-range", f"{pair[0]!r},{pair[1]!r}")
    # inf and nan are not decimal numbers to the one parser: a usage error, as any non-number.
    finite = all(math.isfinite(v) for v in pair)
    expected = (0 if 0 <= pair[0] < pair[1] else 1) if finite else 2
    assert result.exit_code == expected, result.output


@FAST
@given(st.lists(bounds, min_size=0, max_size=5).filter(lambda v: len(v) != 2))
def test_a_range_of_another_count_is_a_usage_error(values: list[float]) -> None:
    text = ",".join(map(repr, values)) or ","
    result, _ = invoke("--nfe", "9", "--rho-bottom-range", text)
    assert result.exit_code == 2
    assert "invalid value for --rho-bottom-range: expected 2 numbers" in result.stderr


@FAST
@given(st.lists(st.one_of(st.integers(-10, 10**6).map(str), junk), min_size=1, max_size=4)
       .filter(lambda tokens: any(not_a_number(t) for t in tokens)), st.data())
def test_malformed_lists_are_usage_errors(tokens: list[str], data: st.DataObject) -> None:
    flag = data.draw(st.sampled_from(["--rungs", "--rho-bottom-range"]))
    result, received = invoke("--nfe", "9", flag, ",".join(tokens))
    assert result.exit_code == 2 and received == {}
    assert f"invalid value for {flag}: expected" in result.stderr


@FAST
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=4, unique=True))
def test_step_budgets_reach_the_search_as_typed(budgets: list[int]) -> None:
    argv = [arg for nfe in budgets for arg in ("--nfe", str(nfe))]
    result, received = invoke(*argv, "--sampler", "euler")   # euler meets every budget
    assert result.exit_code == 0, result.output
    assert received["config"].nfe == tuple(budgets)


@FAST
@given(st.one_of(st.integers(max_value=0).map(str), junk, st.just("")))
def test_a_budget_that_is_not_a_positive_whole_number_is_a_usage_error(text: str) -> None:
    result, received = invoke("--nfe", text)
    assert result.exit_code == 2 and received == {}
    assert "invalid value for '--nfe'" in result.stderr


@FAST
@given(st.permutations(SHAPES).flatmap(lambda s: st.integers(1, len(s)).map(lambda n: s[:n])),
       st.data())
def test_shape_lists_reach_the_space_as_typed(shapes: list[str], data: st.DataObject) -> None:
    result, received = invoke("--nfe", "9", "--shapes", joined(list(shapes), data))
    assert result.exit_code == 0, result.output
    assert received["config"].space.shapes == tuple(shapes)


@FAST
@given(st.text(max_size=20), st.sampled_from(["--rungs", "--rho-bottom-range", "--rho-top-range",
                                              "--shapes", "--nfe"]))
def test_any_text_ends_in_a_result_or_one_error_line(text: str, flag: str) -> None:
    result, _ = invoke(*([] if flag == "--nfe" else ["--nfe", "9"]), flag, text)
    assert result.exit_code in (0, 1, 2)        # invoke() checked: one line, no traceback
