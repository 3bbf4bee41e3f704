"""Which lever pays at few steps: ρ, the σ grid of the steps, or both? Per sampler and budget.

    python benchmarks/levers.py --work DIR [--part I/K] [--db NAME]
        [--nfe 5 --nfe 7 --nfe 9 --nfe 15]
        [--sampler heun --sampler dpmpp_2m --sampler unipc --sampler ipndm]
        [--space rho --space steps --space rho+steps --space rho+window]
        [--rho-range LOW,HIGH] [--more-seeds SPACE/SAMPLER/NFE ...] [--seeds 3]
        [--stochastic-sampler edm_stochastic --stochastic-sampler dpmpp_2m_sde]
        [--stochastic-nfe 9 --stochastic-nfe 15] [--stochastic-rho-range 0.3,1.5]
        [--stochastic-only]
        [--trials 10] [--rungs 16,64] [--large-n 1000] [--truth-seed 1000000]
        [--threads 1] [--device cpu] [--tag NAME]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

Every cell (space, sampler, budget, search seed) is one search with skiptune's defaults
(``--trials`` 10 at rungs ``--rungs``, racing on fresh seed blocks, the schedule it reports).
That schedule, and each (sampler, budget)'s untuned baseline (ρ = 1 on the sampler's own σ
grid), is then scored at ``--large-n`` images on the seeds from ``--truth-seed``, which no
search touches and which are the same for every cell: the "large-N FD". A cell's gain over
its baseline comes with a paired bootstrap interval on those common seeds. ``rho+window`` is
ρ with a σ window searched in ``--window``. The stochastic samplers (``--stochastic-sampler``)
are searched in the ``rho`` space only, at ``--stochastic-nfe``, over ``--stochastic-rho-range``
(to 1.5 by default: their best ρ may lie above 1); ``--rho-range`` sets the deterministic
samplers' range (default: skiptune's, 0.3–1.2).

Everything measured is kept under ``--work``: one database per part, one JSON per finished
cell and one feature file per large-N score. So a killed run resumes where it stopped, and
processes with ``--part 0/2`` and ``--part 1/2`` share the cells between them (cells are
dealt in budget order, the largest budget last). A run without ``--part`` measures what is
still missing and writes the table.

``--more-seeds SPACE/SAMPLER/NFE`` (repeatable) runs ``--seeds`` search seeds for that cell
instead of one; the table then gives each seed's value and reports their median.

Prints the table, the best cell of each budget with its paired interval against the
runner-up, and writes ``benchmarks/results/levers_<tag>.json``, ``.log`` and ``.png`` (tag:
the device type unless given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _kept import key_of, save_array, write_json  # benchmarks/_kept.py

from skiptune.errors import NonFiniteSampleError
from skiptune.models import load_model
from skiptune.objectives import (
    ObjectiveSettings,
    bootstrap_indices,
    bootstrap_values,
    build_objective,
    paired_gain_interval,
)
from skiptune.schedule import TuningSchedule
from skiptune.tuner import SearchConfig, SearchSpace, quiet_optuna, search

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = TuningSchedule(rho_bottom=1.0, rho_top=1.0)


@dataclass(frozen=True)
class Cell:
    space: str
    sampler: str
    nfe: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.space.replace('+', '_')}-{self.sampler}-{self.nfe}-s{self.seed}"


def say(text: str = "") -> None:
    print(text, flush=True)


def space_of(name: str, window: tuple[float, float],
             rho_range: tuple[float, float] | None) -> SearchSpace:
    """The search space a column stands for; ``rho+window`` is ρ with a σ window."""
    ranges = {} if rho_range is None else {"rho_bottom": rho_range, "rho_top": rho_range}
    if name == "rho+window":
        return SearchSpace(kind="rho", sigma_window=window, **ranges)
    return SearchSpace(kind=name, **ranges)


def cells_of(args: argparse.Namespace) -> list[Cell]:
    """Every cell, budget by budget (the largest last), then sampler, then space; the
    stochastic samplers' ρ cells at their budgets after them."""
    more = set(args.more_seeds or ())
    cells = []
    for nfe in () if args.stochastic_only else args.nfe:
        for sampler in args.sampler:
            for space in args.space:
                seeds = args.seeds if f"{space}/{sampler}/{nfe}" in more else 1
                cells.extend(Cell(space, sampler, nfe, seed) for seed in range(seeds))
    cells.extend(Cell("rho", sampler, nfe, 0) for nfe in args.stochastic_nfe
                 for sampler in args.stochastic_sampler)
    return cells


def rho_range_of(cell: Cell, args: argparse.Namespace) -> tuple[float, float] | None:
    """The ρ range a cell searches: the stochastic samplers' wider one, else ``--rho-range``."""
    return args.stochastic_rho_range if cell.sampler in args.stochastic_sampler else args.rho_range


class Truth:
    """Large-N features of a schedule on the common truth seeds, each measured once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model = load_model(args.model, device=args.device)
        self.objectives: dict[tuple[str, int], Any] = {}

    def objective(self, sampler: str, nfe: int) -> Any:
        if (sampler, nfe) not in self.objectives:
            config = ObjectiveSettings(rungs=(self.args.large_n,),
                                       batch_size=self.args.batch_size).for_budget(
                sampler=sampler, nfe=nfe, seed=self.args.truth_seed)
            self.objectives[sampler, nfe] = build_objective(self.model, config, progress=False)
        return self.objectives[sampler, nfe]

    def features(self, sampler: str, nfe: int, schedule: TuningSchedule) -> np.ndarray | None:
        """[large-N, D] features; None when the schedule's samples are not finite."""
        path = self.args.work / "truth" / f"{sampler}-{nfe}-{key_of(schedule)}.npy"
        failed = path.with_suffix(".nonfinite")
        if path.exists():
            return np.load(path)
        if failed.exists():
            return None
        tick = time.perf_counter()
        try:
            evaluation = self.objective(sampler, nfe).evaluate(schedule, keep_features=True)
        except NonFiniteSampleError:
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(json.dumps(schedule.to_dict()))
            return None
        save_array(path, evaluation.features)
        say(f"  large-N {sampler} {nfe} NFE {key_of(schedule)}: {evaluation.value:.4g} "
            f"({time.perf_counter() - tick:.0f} s)")
        return evaluation.features

    def value(self, features: np.ndarray | None, sampler: str, nfe: int) -> float:
        if features is None:
            return float("inf")
        return float(self.objective(sampler, nfe).score(features))

    def gain(self, features: np.ndarray | None, other: np.ndarray | None, sampler: str,
             nfe: int) -> tuple[float, float, float] | None:
        """1 − value / other's value on the common seeds, with its paired 95 % interval."""
        if features is None or other is None:
            return None
        score = self.objective(sampler, nfe).score
        draws = bootstrap_indices(len(features), resamples=200, seed=0)
        low, high = paired_gain_interval(bootstrap_values(features, score, draws),
                                         bootstrap_values(other, score, draws))
        return 1.0 - score(features) / score(other), low, high


def measure_cell(cell: Cell, args: argparse.Namespace, truth: Truth, db: Path) -> dict[str, Any]:
    """Search the cell with the default settings and score its choice at large N."""
    path = args.work / "cells" / f"{cell.name}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    tick = time.perf_counter()
    config = SearchConfig(
        nfe=(cell.nfe,), sampler=(cell.sampler,), trials=args.trials, seed=cell.seed,
        space=space_of(cell.space, args.window, rho_range_of(cell, args)),
        objective=ObjectiveSettings(rungs=args.rungs, batch_size=args.batch_size),
        group=f"levers_{cell.name.replace('-', '_')}",
    )
    (summary,) = search(args.model, config, db=db, device=args.device)
    searched = time.perf_counter() - tick
    chosen = summary.best_schedule or BASELINE
    features = truth.features(cell.sampler, cell.nfe, chosen)
    baseline = truth.features(cell.sampler, cell.nfe, BASELINE)
    gain = truth.gain(features, baseline, cell.sampler, cell.nfe)
    entry = {
        "space": cell.space, "sampler": cell.sampler, "nfe": cell.nfe, "seed": cell.seed,
        "n": args.large_n, "truth_seed": args.truth_seed,
        "value": truth.value(features, cell.sampler, cell.nfe),
        "baseline": truth.value(baseline, cell.sampler, cell.nfe),
        "gain": None if gain is None else gain[0],
        "gain_low": None if gain is None else gain[1],
        "gain_high": None if gain is None else gain[2],
        "schedule": chosen.to_dict(),
        "search": {"study": summary.study_name, "value": summary.best_value,
                   "trial": summary.best_trial, "search_best": summary.search_best_value,
                   "validation_n": summary.validation_num_samples,
                   "blocks": summary.validation_blocks, "race_images": summary.race_images,
                   "seconds": round(searched, 1)},
        "seconds": round(time.perf_counter() - tick, 1),
    }
    write_json(path, entry)
    say(f"{cell.name}: {entry['value']:.4g} vs ρ = 1 {entry['baseline']:.4g}, "
        f"gain {interval_text(entry)} ({entry['seconds']:.0f} s)")
    return entry


def interval_text(entry: dict[str, Any]) -> str:
    if entry["gain"] is None:
        return "—"
    return f"{entry['gain']:+.0%} [{entry['gain_low']:+.0%}, {entry['gain_high']:+.0%}]"


def rho_text(schedule: dict[str, Any]) -> str:
    shape = schedule.get("shape", "linear")
    grid = " own grid" if schedule.get("steps") is None else " tuned grid"
    return f"ρ {schedule['rho_bottom']:.2f}→{schedule['rho_top']:.2f} {shape}{grid}"


def table(entries: list[dict[str, Any]], args: argparse.Namespace,
          truth: Truth) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows per (sampler, budget) with every space's median over seeds, and the text."""
    lines = [f"large-N FD at N = {args.large_n} on seeds {args.truth_seed}…; gain over ρ = 1 "
             "with its paired 95 % bootstrap interval (several seeds: each seed's value, "
             "then the median)",
             " | ".join(["NFE", "sampler", "ρ = 1 (own grid)", *args.space])]
    rows = []
    for nfe in sorted({*args.nfe, *args.stochastic_nfe}):
        for sampler in (*args.sampler, *args.stochastic_sampler):
            row: dict[str, Any] = {"sampler": sampler, "nfe": nfe, "spaces": {},
                                   "stochastic": sampler in args.stochastic_sampler}
            texts = []
            for space in args.space:
                runs = sorted((e for e in entries if (e["space"], e["sampler"], e["nfe"]) ==
                               (space, sampler, nfe)), key=lambda e: e["seed"])
                if not runs:
                    texts.append("—")
                    continue
                middle = sorted(runs, key=lambda e: e["value"])[(len(runs) - 1) // 2]
                row["baseline"] = middle["baseline"]
                row["spaces"][space] = {**middle, "seeds": [
                    {"seed": e["seed"], "value": e["value"], "schedule": e["schedule"]}
                    for e in runs]}
                each = "" if len(runs) == 1 else (
                    " (" + ", ".join(f"{e['value']:.3g}" for e in runs) + ")")
                texts.append(f"{middle['value']:.4g} {interval_text(middle)}{each}")
            if row["spaces"]:
                rows.append(row)
                lines.append(" | ".join([str(nfe), sampler, f"{row['baseline']:.4g}", *texts]))
    lines.append("")
    lines.append("best cell per budget (median over seeds), against the runner-up on the "
                 "same seeds (every sampler starts from the same noise per seed):")
    for nfe in sorted({*args.nfe, *args.stochastic_nfe}):
        ranked = sorted(((s["value"], row["sampler"], space, s) for row in rows
                         if row["nfe"] == nfe for space, s in row["spaces"].items()),
                        key=lambda v: v[0])
        if len(ranked) < 2:
            continue
        (_, s1, p1, best), (_, s2, p2, second) = ranked[:2]
        untuned = min(row["baseline"] for row in rows if row["nfe"] == nfe)
        versus = truth.gain(truth.features(s1, nfe, TuningSchedule.from_dict(best["schedule"])),
                            truth.features(s2, nfe, TuningSchedule.from_dict(second["schedule"])),
                            s1, nfe)
        against = ("no interval (non-finite samples)" if versus is None else
                   f"gain over it {versus[0]:+.1%} [{versus[1]:+.1%}, {versus[2]:+.1%}]")
        lines.append(f"  {nfe} NFE: {s1} {p1} {best['value']:.4g} ({rho_text(best['schedule'])}),"
                     f" runner-up {s2} {p2} {second['value']:.4g}; {against}; "
                     f"best untuned {untuned:.4g}")
    lines.append("")
    lines.append("the best sampler per budget and space as `skiptune best` names it (the lowest "
                 "validated value, N = the race blocks' images) against the large-N table:")
    for nfe in args.nfe:
        for space in args.space:
            cells = [(row["sampler"], row["spaces"][space]) for row in rows
                     if row["nfe"] == nfe and not row["stochastic"] and space in row["spaces"]]
            if len(cells) < 2:
                continue
            named = min(cells, key=lambda c: (c[1]["search"]["value"], c[0]))[0]
            truth_best = min(cells, key=lambda c: (c[1]["value"], c[0]))[0]
            verdict = "agree" if named == truth_best else "DIFFER"
            lines.append(f"  {nfe} NFE {space:>9}: best names {named}, large N {truth_best}: "
                         f"{verdict}")
    return rows, lines


def plot(rows: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> bool:
    """One panel per budget: each sampler's large-N FD at ρ = 1 and per space. False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    columns = ["ρ = 1", *args.space]
    budgets = sorted({row["nfe"] for row in rows})
    figure, axes = plt.subplots(1, len(budgets), figsize=(4.2 * len(budgets), 3.6),
                                squeeze=False)
    for axis, nfe in zip(axes[0], budgets, strict=True):
        budget = [row for row in rows if row["nfe"] == nfe]
        width = 0.8 / max(1, len(columns))
        for c, column in enumerate(columns):
            values = [row["baseline"] if column == "ρ = 1" else
                      row["spaces"].get(column, {}).get("value", float("nan")) for row in budget]
            axis.bar(np.arange(len(budget)) + c * width, values, width, label=column)
        axis.set_xticks(np.arange(len(budget)) + 0.4 - width / 2,
                        [row["sampler"] for row in budget], fontsize=7, rotation=25,
                        ha="right")
        axis.set_title(f"{nfe} NFE")
        axis.set_ylabel(f"FD at N = {args.large_n}")
        axis.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def pair(text: str) -> tuple[float, float]:
    low, high = (float(v) for v in text.split(","))
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="kept measurements")
    parser.add_argument("--part", default=None, help="I/K: measure every K-th cell from I")
    parser.add_argument("--db", default=None,
                        help="the database file under --work; default part<I>.db")
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, action="append")
    parser.add_argument("--sampler", action="append")
    parser.add_argument("--space", action="append",
                        choices=("rho", "steps", "rho+steps", "rho+window"))
    parser.add_argument("--rho-range", type=pair, default=None,
                        help="ρ's range for the deterministic samplers; default skiptune's")
    parser.add_argument("--stochastic-sampler", action="append")
    parser.add_argument("--stochastic-nfe", type=int, action="append")
    parser.add_argument("--stochastic-rho-range", type=pair, default=(0.3, 1.5))
    parser.add_argument("--stochastic-only", action="store_true",
                        help="measure only the stochastic cells (a process beside the parts)")
    parser.add_argument("--window", type=pair, default=(0.05, 20.0))
    parser.add_argument("--more-seeds", action="append")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rungs", type=lambda t: tuple(int(r) for r in t.split(",")),
                        default=(16, 64))
    parser.add_argument("--large-n", type=int, default=1000)
    parser.add_argument("--truth-seed", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tag", default=None, help="output name; default: the device type")
    args = parser.parse_args(argv)
    args.nfe = sorted(args.nfe or (5, 7, 9, 15))
    args.sampler = args.sampler or ["heun", "dpmpp_2m", "unipc", "ipndm"]
    args.space = args.space or ["rho", "steps", "rho+steps"]
    args.stochastic_sampler = args.stochastic_sampler or ["edm_stochastic", "dpmpp_2m_sde"]
    args.stochastic_nfe = sorted(args.stochastic_nfe or (9, 15))
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_optuna()
    truth = Truth(args)
    cells = cells_of(args)
    part, parts = (0, 1) if args.part is None else (int(v) for v in args.part.split("/"))
    db = args.work / (args.db or ("stochastic.db" if args.stochastic_only else f"part{part}.db"))
    args.work.mkdir(parents=True, exist_ok=True)
    entries = [measure_cell(cell, args, truth, db) for cell in cells[part::parts]]
    if args.part is not None or args.stochastic_only:
        return 0
    rows, lines = table(entries, args, truth)
    settings = {key: value for key, value in vars(args).items()
                if key not in ("work", "part", "model", "tag", "stochastic_only", "db")}
    settings.update(model=str(args.model.name), argv=sys.argv[1:],
                    threads=torch.get_num_threads())
    text = [f"levers: {json.dumps(settings, default=list)}", *lines]
    for line in text:
        say(line)
    tag = args.tag or torch.device(args.device).type
    out = RESULTS / f"levers_{tag}"
    write_json(out.with_suffix(".json"), {"settings": settings, "cells": rows})
    if plot(rows, args, out.with_suffix(".png")):
        text.append(f"figure: {out.with_suffix('.png').relative_to(RESULTS.parent.parent)}")
    out.with_suffix(".log").write_text("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
