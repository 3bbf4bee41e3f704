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
from skiptune.errors import ConfigurationError
from skiptune.storage import FrontRecord, Storage
from skiptune.tuner.results._reading import front_report, reading_storage, stored_studies

__all__ = ["PLOT_SUFFIXES", "plot_front", "quiet_optuna"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def quiet_optuna() -> None:
    """Keep Optuna's INFO lines ("Trial 3 finished...") off the terminal; warnings stay."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def measured_at(records: Sequence[FrontRecord], search_n: int) -> str:
    """How the plotted values were measured: ``N=<search N>`` for the search's own values,
    ``validated N=<n>`` for values validated on fresh seeds (whose N the search's is not)."""
    validated = sorted({int(r.validation["num_samples"]) for r in records if r.validation})
    parts = [f"N={search_n}"] if any(r.validation is None for r in records) else []
    parts += [f"validated N={n}" for n in validated]
    return ", ".join(parts) or f"N={search_n}"


def plot_front(
    db: str | Path | Storage | None,
    path: str | Path,
    *,
    group: str | None = None,
) -> Path:
    """Write a PNG: proxy value against NFE (tuned and baseline), and value against ρ_bottom.

    Left panel: every stored tuned and baseline point per comparable measurement set, the
    front drawn as a line. Right panel: complete trials' value against rho_bottom, one
    colour per NFE. Needs matplotlib (``pip install 'skiptune[plot]'``).
    """
    target = check_output_path(path, suffixes=PLOT_SUFFIXES)   # before any work
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigurationError(
            "skiptune plot needs matplotlib: pip install matplotlib (or 'skiptune[plot]')"
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
        series = ((report.tuned, "o-", "tuned"), (report.baseline, "s--", "ρ = 1"))
        for points, style, name in series:
            front = [p for p in points if p.on_front]
            label = f"{name} ({report.metric}, {measured_at(points, report.num_samples)})"
            left.plot([p.nfe for p in front], [p.value for p in front], style, label=label)
            others = [p for p in points if not p.on_front]
            if others:
                left.plot([p.nfe for p in others], [p.value for p in others], "x", color="grey")
    left.set_xlabel("NFE (denoiser calls per image)")
    left.set_ylabel("proxy value (lower is better)")
    left.set_title("Pareto front: quality against step budget")
    left.legend(fontsize=8)
    for config, finished in trials:
        complete = [t for t in finished if t.value is not None and math.isfinite(t.value)]
        if complete:
            right.scatter(
                [t.params["rho_bottom"] for t in complete], [t.value for t in complete],
                s=14, label=f"{config.sampler}, {config.nfe} NFE",
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
