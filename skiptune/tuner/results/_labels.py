"""How results are worded wherever they are shown (terminal, JSON, report page, export line):
gains and their intervals, whether a gain is established, and the N and seeds behind a value.

Pure functions of numbers, so that ``best``, ``front``, ``studies``, ``export`` and the report
say the same thing the same way.
"""

from __future__ import annotations

__all__ = ["gain_established", "gain_text", "interval_text", "measured_on", "percent"]


def percent(value: float) -> str:
    """A fraction as a whole percentage; one that rounds to zero prints ``0%``, never ``-0%``."""
    text = f"{value:.0%}"
    return "0%" if text == "-0%" else text


def interval_text(low: float, high: float) -> str:
    """A gain's interval as the CLI prints it: ``[0%, 2%]``."""
    return f"[{percent(low)}, {percent(high)}]"


def gain_established(low: float | None, high: float | None) -> bool | None:
    """Whether a gain's interval lies above zero (the schedule is better than ρ = 1); None
    without an interval (a study not validated)."""
    if low is None or high is None:
        return None
    return low > 0


def gain_text(gain: float, low: float | None, high: float | None, *,
              level: float | None = None) -> str:
    """``gain 7% [-5%, 14%] (95% paired bootstrap): not established, the interval includes
    0``: the gain, its interval where there is one, and whether the interval clears zero."""
    text = f"gain {percent(gain)}"
    if low is None or high is None:
        return text
    text += f" {interval_text(low, high)} ({level or 0.95:.0%} paired bootstrap)"
    if not gain_established(low, high):
        text += ": not established, the interval includes 0"
    return text


def measured_on(num_samples: int, seed: int, *, validated: bool = False) -> str:
    """The images a value was measured on: ``N = 64, seeds 0–63``, and ``N = 128, seeds
    64–191, validated`` for a value validated on fresh seeds; image j has noise seed
    ``seed + j``."""
    text = f"N = {num_samples}, seeds {seed}–{seed + num_samples - 1}"
    return text + (", validated" if validated else "")
