"""Which lever pays at few steps: ρ, the σ grid of the steps, or both? Validated, per sampler.

    python benchmarks/levers.py [--nfe 5 --nfe 7 --nfe 9 --nfe 15]
        [--sampler heun --sampler dpmpp_2m --sampler unipc --sampler ipndm]
        [--space rho --space steps --space rho+steps --space rho+window]
        [--trials 60] [--rungs 64,256] [--validation-n 1000] [--window 0.05,20]
        [--device cuda] [--db levers.db] [--tag NAME]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

For every space, one search of every (sampler, budget) runs into one database under the
study group ``levers_<space>``, each study with the same trial budget (``--trials``: choose
it large enough for the largest space, and read the best-so-far curves to see that the
search had converged). Every study is validated as skiptune validates (its top distinct
schedules and ρ = 1 re-scored at ``--validation-n`` images on seeds no trial used, with a
paired bootstrap interval of the gain): all cells share those N and seeds, so they compare
directly. The cell "ρ = 1" is the sampler's own grid at ρ = 1 (each study's validated
baseline; the same in every space). ``rho+window`` is ρ with a σ window searched in
``--window``: the σ window revisited under the same budget.

Prints the table and the curves, and writes ``benchmarks/results/levers_<tag>.json`` and
``.log`` (tag: the device type unless given), and ``.png`` of the curves when matplotlib
is installed. A run stopped midway resumes with the same ``--db``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from skiptune.objectives import ObjectiveSettings
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, SearchSpace, ValidationSettings, quiet_optuna, search

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"
RESULTS = Path(__file__).resolve().parent / "results"


def space_of(name: str, window: tuple[float, float]) -> SearchSpace:
    """The search space a column stands for; ``rho+window`` is ρ with a σ window."""
    if name == "rho+window":
        return SearchSpace(kind="rho", sigma_window=window)
    return SearchSpace(kind=name)


def best_so_far(db: Path, study_name: str) -> list[float]:
    """The search's own best value after each finished trial, in trial order (pruned and
    failed trials repeat the best before them)."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(db).optuna_storage())
    curve: list[float] = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        value = trial.value if trial.state == TrialState.COMPLETE else None
        previous = curve[-1] if curve else float("inf")
        curve.append(previous if value is None else min(previous, float(value)))
    return curve


def converged_at(curve: list[float], *, tolerance: float = 0.01) -> int | None:
    """The first trial (1-based) whose best is within ``tolerance`` of the final best."""
    if not curve or curve[-1] == float("inf"):
        return None
    return next(i + 1 for i, v in enumerate(curve) if v <= curve[-1] * (1 + tolerance))


def cell(summary: Any) -> dict[str, Any]:
    """A study's validated choice, its baseline and the gain's interval."""
    return {
        "study": summary.study_name,
        "validated": summary.validated,
        "n": summary.validation_num_samples,
        "value": summary.best_value,
        "baseline": summary.baseline_value,
        "gain": summary.improvement,
        "gain_low": summary.gain_low,
        "gain_high": summary.gain_high,
        "schedule": None if summary.best_schedule is None else summary.best_schedule.to_dict(),
    }


def cell_text(entry: dict[str, Any]) -> str:
    if entry["value"] is None:
        return "—"
    interval = ("" if entry["gain_low"] is None else
                f" [{entry['gain_low']:+.0%},{entry['gain_high']:+.0%}]")
    return f"{entry['value']:.4g}{interval}"


def sparse(curve: list[float]) -> str:
    """The curve at trials 1, 2, 4, 8, … and the last."""
    marks = sorted({min(2**k, len(curve)) for k in range(len(curve).bit_length() + 1)})
    return " ".join(f"{m}:{curve[m - 1]:.4g}" for m in marks if m >= 1)


def plot(results: dict[str, Any], path: Path) -> bool:
    """One panel per budget: best-so-far per (sampler, space). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    budgets = results["settings"]["nfe"]
    figure, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.6),
                                squeeze=False)
    for axis, nfe in zip(axes[0], budgets, strict=True):
        for row in results["cells"]:
            if row["nfe"] != nfe:
                continue
            for space, curve in row["curves"].items():
                axis.plot(range(1, len(curve) + 1), curve, label=f"{row['sampler']} {space}")
        axis.set_title(f"{nfe} NFE")
        axis.set_xlabel("finished trials")
        axis.set_ylabel("best proxy value so far")
        axis.set_yscale("log")
    axes[0][0].legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, action="append")
    parser.add_argument("--sampler", action="append")
    parser.add_argument("--space", action="append",
                        choices=("rho", "steps", "rho+steps", "rho+window"))
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--rungs", default="64,256")
    parser.add_argument("--validation-n", type=int, default=1000)
    parser.add_argument("--validate-top", type=int, default=3)
    parser.add_argument("--window", default="0.05,20")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--db", type=Path, default=None, help="keep (and resume) the studies")
    parser.add_argument("--tag", default=None, help="output name; default: the device type")
    args = parser.parse_args(argv)
    budgets = tuple(args.nfe or (5, 7, 9, 15))
    samplers = tuple(args.sampler or ("heun", "dpmpp_2m", "unipc", "ipndm"))
    spaces = tuple(args.space or ("rho", "steps", "rho+steps"))
    window = tuple(float(v) for v in args.window.split(","))
    tag = args.tag or torch.device(args.device).type
    RESULTS.mkdir(exist_ok=True)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    quiet_optuna()
    settings = {"model": str(args.model), "nfe": list(budgets), "samplers": list(samplers),
                "spaces": list(spaces), "trials": args.trials, "rungs": args.rungs,
                "validation_n": args.validation_n, "validate_top": args.validate_top,
                "window": list(window), "device": args.device, "argv": sys.argv[1:]}
    say(f"levers: {json.dumps(settings)}")
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "levers.db"
        by_study: dict[tuple[str, str, int], dict[str, Any]] = {}
        for space in spaces:
            config = SearchConfig(
                nfe=budgets, sampler=samplers, trials=args.trials, space=space_of(space, window),
                objective=ObjectiveSettings(rungs=tuple(int(r) for r in args.rungs.split(",")),
                                            batch_size=args.batch_size),
                validation=ValidationSettings(top_k=args.validate_top,
                                              num_samples=args.validation_n),
                group=f"levers_{space.replace('+', '_')}",
            )
            for summary in search(args.model, config, db=db, device=args.device):
                entry = cell(summary)
                entry["curve"] = best_so_far(db, summary.study_name)
                by_study[(space, summary.sampler, summary.nfe)] = entry
                say(f"  {space:>10} {summary.sampler:>8} {summary.nfe:>3} NFE: "
                    f"{cell_text(entry)} vs ρ = 1 {entry['baseline'] or float('nan'):.4g}")
    cells = []
    for sampler in samplers:
        for nfe in budgets:
            row = {"sampler": sampler, "nfe": nfe,
                   "spaces": {s: by_study[(s, sampler, nfe)] for s in spaces}, "curves": {}}
            row["baseline"] = row["spaces"][spaces[0]]["baseline"]
            row["curves"] = {s: row["spaces"][s].pop("curve") for s in spaces}
            cells.append(row)
    say()
    say(f"validated {args.validation_n} images on fresh seeds; value [95% interval of the "
        "gain over ρ = 1]")
    say(" | ".join(["sampler", "NFE", "ρ = 1 (own grid)", *spaces]))
    for row in cells:
        say(" | ".join([row["sampler"], str(row["nfe"]), f"{row['baseline']:.4g}",
                        *(cell_text(row["spaces"][s]) for s in spaces)]))
    say()
    say(f"best so far (search's own values, N = last rung) by finished trial; "
        f"'converged' = first trial within 1% of the final best, of {args.trials}")
    for row in cells:
        for space, curve in row["curves"].items():
            say(f"  {row['sampler']:>8} {row['nfe']:>3} NFE {space:>10}: {sparse(curve)} "
                f"(converged at {converged_at(curve)})")
    results = {"settings": settings, "cells": cells}
    out = RESULTS / f"levers_{tag}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    if plot(results, out.with_suffix(".png")):
        say(f"curves: {out.with_suffix('.png')}")
    out.with_suffix(".log").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
