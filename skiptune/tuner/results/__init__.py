"""Reading what a search stored: summaries, the stored fronts, export, plots, the report
page and optuna-dashboard.

Every reader opens the database read-only and closes it when done; none imports the search
(``skiptune.tuner.search``), so a read command loads neither torch's sampling nor Optuna's
samplers. ``pareto_front`` and ``speed_claims`` are the pure maths behind the front.
"""

from __future__ import annotations

from skiptune.tuner.results._dashboard import serve_dashboard
from skiptune.tuner.results._export import export_schedule
from skiptune.tuner.results._labels import (
    gain_established,
    gain_text,
    interval_text,
    measured_on,
    percent,
)
from skiptune.tuner.results._pareto import (
    FrontPoint,
    SpeedClaim,
    describe_claim,
    front_flags,
    pareto_front,
    pareto_mask,
    speed_claims,
)
from skiptune.tuner.results._plot import PLOT_SUFFIXES, plot_front, quiet_optuna
from skiptune.tuner.results._reading import (
    FrontReport,
    best_schedule,
    front_report,
    list_studies,
    stored_studies,
)
from skiptune.tuner.results._report import write_report
from skiptune.tuner.results._summary import (
    StudySummary,
    best_and_baseline,
    best_per_budget,
    summarize,
)

__all__ = [
    "PLOT_SUFFIXES",
    "FrontPoint",
    "FrontReport",
    "SpeedClaim",
    "StudySummary",
    "best_and_baseline",
    "best_per_budget",
    "best_schedule",
    "describe_claim",
    "export_schedule",
    "front_flags",
    "front_report",
    "gain_established",
    "gain_text",
    "interval_text",
    "list_studies",
    "measured_on",
    "pareto_front",
    "pareto_mask",
    "percent",
    "plot_front",
    "quiet_optuna",
    "serve_dashboard",
    "speed_claims",
    "stored_studies",
    "summarize",
    "write_report",
]
