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

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_STUDY = "skiptune.tuner.study"
_SEARCH = "skiptune.tuner.search"
_RESULTS = "skiptune.tuner.results"

# Name → the subpackage that holds it, imported on first use (PEP 562).
_LAZY = {
    "SearchConfig": _STUDY,
    "SearchSpace": _STUDY,
    "StudyConfig": _STUDY,
    "ValidationSettings": _STUDY,
    "ValidationResult": _STUDY,
    "validation_result": _STUDY,
    "search": _SEARCH,
    "EventCallback": _SEARCH,
    "SearchEvent": _SEARCH,
    "BatchSizeReduced": _SEARCH,
    "CandidateValidated": _SEARCH,
    "RungDone": _SEARCH,
    "StudyDone": _SEARCH,
    "StudyStarted": _SEARCH,
    "TrialFinished": _SEARCH,
    "TrialStarted": _SEARCH,
    "Waiting": _SEARCH,
    "WorkerLost": _SEARCH,
    "Note": _SEARCH,
    "ReferenceSampled": _SEARCH,
    "best_schedule": _RESULTS,
    "best_per_budget": _RESULTS,
    "export_schedule": _RESULTS,
    "front_report": _RESULTS,
    "list_studies": _RESULTS,
    "plot_front": _RESULTS,
    "quiet_optuna": _RESULTS,
    "serve_dashboard": _RESULTS,
    "write_report": _RESULTS,
    "FrontReport": _RESULTS,
    "StudySummary": _RESULTS,
    "pareto_front": _RESULTS,
    "speed_claims": _RESULTS,
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skiptune.tuner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
