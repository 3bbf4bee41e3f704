"""The front as a picture a user looks at, and Optuna's terminal chatter kept quiet.

Sample images under a schedule are written by ``skiptune.sampling.write_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from skiptune._files import PNG_SOFTWARE, check_output_path, write_atomically
from skiptune._install import install_hint
from skiptune.errors import ConfigurationError
from skiptune.storage import FrontRecord, Storage
from skiptune.tuner.results._labels import measured_on
from skiptune.tuner.results._reading import front_report, reading_storage, stored_studies

__all__ = ["PLOT_SUFFIXES", "plot_front", "quiet_optuna"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def quiet_optuna() -> None:
    """Keep Optuna's INFO lines ("Trial 3 finished...") off the terminal; warnings stay."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def measured_at(records: Sequence[FrontRecord]) -> str:
    """How the plotted values were measured, each way once: ``N = 64, seeds 0–63`` for the
    search's own values, ``N = 128, seeds 64–191, validated`` for values validated on fresh
    seeds."""
    return "; ".join(sorted({
        measured_on(r.measured_num_samples, r.measured_seed, validated=r.validated)
        for r in records
    }))


def plot_front(
    db: str | Path | Storage | None,
    path: str | Path,
    *,
    group: str | None = None,
) -> Path:
    """Write a PNG: proxy value against NFE (tuned and baseline), and value against ρ_bottom.

    Left panel: every stored tuned and baseline point per comparable measurement set, one
    line per sampler and kind, the points on their sampler's front drawn larger. Right panel:
    complete trials' value against rho_bottom, one colour per NFE. Needs matplotlib
    (``pip install '.[plot]'`` in a clone).
    """
    target = check_output_path(path, suffixes=PLOT_SUFFIXES)   # before any work
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigurationError(
            "skiptune plot needs matplotlib: pip install matplotlib (or "
            f"{install_hint('plot')})"
        ) from e
    with reading_storage(db) as storage:
        reports = front_report(storage, group=group)
        if not reports:
            raise ConfigurationError(
                f"nothing to plot: no finished trials in {storage.display_url}"
                + (f" for group {group}" if group else "")
            )
        # Read while the database is open; the figure is drawn after it is closed.
        trials = [
            (config, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            for study, config in stored_studies(storage, group=group)
        ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for report in reports:
        for sampler in report.samplers:
            series = ((report.tuned, "o-", "tuned"), (report.baseline, "s--", "ρ = 1"))
            for records, style, name in series:
                points = [p for p in records if p.sampler == sampler]
                if not points:
                    continue
                label = f"{sampler} {name} ({report.metric}, {measured_at(points)})"
                line, = left.plot([p.nfe for p in points], [p.value for p in points], style,
                                  label=label)
                front = [p for p in points if p.on_front]
                left.plot([p.nfe for p in front], [p.value for p in front], style[0],
                          markersize=9, color=line.get_color())
    left.set_xlabel("NFE (denoiser calls per image)")
    left.set_ylabel("proxy value (lower is better)")
    left.set_title("Pareto front: quality against step budget")
    left.legend(fontsize=8)
    for config, finished in trials:
        complete = [t for t in finished if t.value is not None and math.isfinite(t.value)]
        if complete:
            right.scatter(
                [t.params["rho_bottom"] for t in complete], [t.value for t in complete],
                s=14, label=f"{config.sampler}, {config.nfe} NFE "
                f"({measured_on(config.num_samples, config.seed)})",
            )
    right.set_xlabel("ρ_bottom (deepest skip's factor)")
    right.set_ylabel("proxy value of complete trials")
    right.set_title("Value against ρ_bottom")
    right.legend(fontsize=8)
    figure.tight_layout()
    try:
        kind = target.suffix.lower().lstrip(".")
        # A PNG carries skiptune's mark, for the writer rule (SVG and PDF take other keys).
        metadata = dict([PNG_SOFTWARE]) if kind == "png" else None
        write_atomically(target, lambda handle: figure.savefig(
            handle, dpi=120, format=kind, metadata=metadata), suffixes=PLOT_SUFFIXES)
    finally:
        plt.close(figure)
    return target
