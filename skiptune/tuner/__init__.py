"""Skip-schedule studies: what a study is, the search that runs it, and reading its results.

Three subpackages around the study record: ``skiptune.tuner.study`` (the typed config, the
study's identity and what it stores), ``skiptune.tuner.search`` (the only package that asks
and tells trials) and ``skiptune.tuner.results`` (summaries, fronts, export and plots, read
from the database; it never imports the search). This module re-exports their everyday
names lazily: reading results through it does not import the search machinery.

``search(model, SearchConfig(nfe=9))`` runs a resumable study per step budget;
``best_schedule``, ``export_schedule`` (its file format lives in ``skiptune.exported``),
``front_report`` and ``list_studies`` read the results back; ``pareto_front`` and
``speed_claims`` are the pure maths behind the front.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from skiptune._lazy import lazy_exports

# The names each subpackage exports, imported on first use (PEP 562).
_EXPORTS = {
    "skiptune.tuner.study": (
        "SearchConfig", "SearchSpace", "StudyConfig", "ValidationSettings", "ValidationResult",
        "validation_result",
    ),
    "skiptune.tuner.search": (
        "search", "EventCallback", "SearchEvent", "BatchSizeReduced", "CandidateValidated",
        "RungDone", "StudyDone", "StudyStarted", "TrialFinished", "TrialStarted", "Waiting",
        "WorkerLost", "Note", "ReferenceSampled",
    ),
    "skiptune.tuner.results": (
        "best_schedule", "best_per_budget", "export_schedule", "front_report", "list_studies",
        "plot_front", "quiet_optuna", "serve_dashboard", "write_report", "FrontReport",
        "StudySummary", "pareto_front", "speed_claims",
    ),
}

if TYPE_CHECKING:
    from skiptune.tuner.results import (
        FrontReport,
        StudySummary,
        best_per_budget,
        best_schedule,
        export_schedule,
        front_report,
        list_studies,
        pareto_front,
        plot_front,
        quiet_optuna,
        serve_dashboard,
        speed_claims,
        write_report,
    )
    from skiptune.tuner.search import (
        BatchSizeReduced,
        CandidateValidated,
        EventCallback,
        Note,
        ReferenceSampled,
        RungDone,
        SearchEvent,
        StudyDone,
        StudyStarted,
        TrialFinished,
        TrialStarted,
        Waiting,
        WorkerLost,
        search,
    )
    from skiptune.tuner.study import (
        SearchConfig,
        SearchSpace,
        StudyConfig,
        ValidationResult,
        ValidationSettings,
        validation_result,
    )


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _TunerModule(types.ModuleType):
    """``skiptune.tuner.search`` is the function ``search``, as before the split.

    Importing the subpackage ``skiptune.tuner.search`` would otherwise make the import system
    set this module's ``search`` to the subpackage, shadowing the function; the subpackage is
    always reached by ``from skiptune.tuner.search import ...`` (``sys.modules``) instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "search" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _TunerModule


__all__ = [
    "BatchSizeReduced",
    "CandidateValidated",
    "EventCallback",
    "FrontReport",
    "Note",
    "ReferenceSampled",
    "RungDone",
    "SearchConfig",
    "SearchEvent",
    "SearchSpace",
    "StudyConfig",
    "StudyDone",
    "StudyStarted",
    "StudySummary",
    "TrialFinished",
    "TrialStarted",
    "ValidationResult",
    "ValidationSettings",
    "Waiting",
    "WorkerLost",
    "best_per_budget",
    "best_schedule",
    "export_schedule",
    "front_report",
    "list_studies",
    "pareto_front",
    "plot_front",
    "quiet_optuna",
    "search",
    "serve_dashboard",
    "speed_claims",
    "validation_result",
    "write_report",
]
