"""How well does a cheap proxy FID at small N rank skip schedules? (proxy fidelity)

    python benchmarks/proxy_fidelity.py [--nfe 9] [--sampler heun] [--rungs 64,128,256,512]
        [--large-n 1024] [--batch-size 256] [--device cpu] [--metric fd] [--json out.json]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

Scores a grid of skip schedules (ρ_bottom 0.3 … 1.1 with ρ_top = 1, plus ρ_top, power and
cosine variants: 18 in all, or the first --schedules of them) on the demonstration model,
at each rung N and at a large N, then prints:

1. each schedule's value at every rung and at the large N;
2. per rung, the Spearman rank correlation of its ranking with the large-N ranking;
3. per rung, the large-N regret of the schedule that rung would pick (its large-N value
   minus the best large-N value, absolute and relative);
4. per rung, seconds per trial (sampling up to N and scoring every rung on the way), and the
   split of a trial's time between sampling, feature extraction and the rest.

The large-N run uses seeds disjoint from the rungs' (offset --truth-seed), so a rung's
agreement with it is not inflated by shared samples; --shared-seeds reuses the rungs'
samples instead (cheaper: one pass of --large-n samples per schedule).
Measured (commit 762f62a, demo model, Heun 9 NFE, digit FD, one thread of a shared 2-core
CPU, --threads 1, default flags: 18 schedules × (512 + 1024) samples in 59 minutes):

     N  spearman  regret (of 2.154 at N=1024)  s/trial
    64     0.998  0.000  (0.0 %)                  6.1
   128     0.998  0.079  (3.6 %)                 11.9
   256     0.992  0.079  (3.6 %)                 25.5
   512     1.000  0.000  (0.0 %)                 58.6

Sampling took 99.3 % of a trial, features 0.4 %, the rest 0.3 %. Best at N = 1024:
ρ 0.5 → 0.9 linear (FD 2.15; ρ = 1: 4.35). The grid's schedules are far apart compared with
the noise of common-random-number FD, so it tests gross ranking, not fine resolution.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from skiptune.models import load_model
from skiptune.objectives import Evaluation, ObjectiveConfig, build_objective
from skiptune.schedule import TuningSchedule

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"


def schedule_grid() -> list[TuningSchedule]:
    """18 schedules: the paper's linear family and variants of ρ_top and of the curve shape."""
    grid = [TuningSchedule(round(0.3 + 0.1 * i, 1)) for i in range(9)]  # 0.3 … 1.1, ρ_top 1
    grid += [TuningSchedule(rho_bottom, rho_top=0.9) for rho_bottom in (0.5, 0.7, 0.9)]
    grid += [
        TuningSchedule(rho_bottom, shape="power", gamma=gamma)
        for gamma in (0.5, 2.0)
        for rho_bottom in (0.5, 0.7)
    ]
    grid += [TuningSchedule(rho_bottom, shape="cosine") for rho_bottom in (0.5, 0.7)]
    return grid


def describe(schedule: TuningSchedule) -> str:
    shape = schedule.shape if schedule.shape != "power" else f"power{schedule.gamma:g}"
    return f"{schedule.rho_bottom:.2f}→{schedule.rho_top:.2f} {shape}"


@dataclass
class Trial:
    """One schedule's scores and timings."""

    schedule: TuningSchedule
    rung_values: dict[int, float] = field(default_factory=dict)
    rung_seconds: dict[int, float] = field(default_factory=dict)  # elapsed when rung N is done
    truth: float = float("nan")
    split: dict[str, float] = field(default_factory=dict)  # seconds of the rung run


def run_rungs(objective, schedule: TuningSchedule) -> tuple[Evaluation, dict[int, float]]:
    """Evaluate through every rung, noting the elapsed time when each is done."""
    started = time.perf_counter()
    elapsed: dict[int, float] = {}

    def report(_index: int, n: int, _value: float) -> None:
        elapsed[n] = time.perf_counter() - started

    return objective.evaluate(schedule, report=report), elapsed


def rank_summary(trials: list[Trial], rungs: list[int]) -> list[dict[str, float]]:
    """Spearman ρ with the large-N ranking, regret of each rung's pick, seconds per trial."""
    truth = np.array([t.truth for t in trials])
    best_truth = float(truth.min())
    rows = []
    for n in rungs:
        values = np.array([t.rung_values[n] for t in trials])
        correlation = float(spearmanr(values, truth).statistic)
        picked = int(values.argmin())
        regret = float(truth[picked]) - best_truth
        seconds = float(np.mean([t.rung_seconds[n] for t in trials]))
        rows.append(
            {
                "n": n,
                "spearman": correlation,
                "picked": describe(trials[picked].schedule),
                "regret": regret,
                "regret_relative": regret / best_truth,
                "seconds_per_trial": seconds,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--nfe", type=int, default=9)
    parser.add_argument("--metric", default="fd", choices=("fd", "kid"))
    parser.add_argument("--rungs", default="64,128,256,512", help="comma-separated N")
    parser.add_argument("--large-n", type=int, default=1024, help="N of the reference ranking")
    parser.add_argument("--schedules", type=int, default=None, help="use the first K of 18")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth-seed", type=int, default=1_000_000, help="seed of large-N run")
    parser.add_argument("--shared-seeds", action="store_true", help="large N reuses rung seeds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rungs = sorted(int(n) for n in args.rungs.split(","))
    if args.large_n <= rungs[-1]:
        parser.error(f"--large-n ({args.large_n}) must exceed the largest rung ({rungs[-1]})")
    grid = schedule_grid()[: args.schedules]
    model = load_model(args.model, device=args.device)
    common = {
        "sampler": args.sampler,
        "nfe": args.nfe,
        "metric": args.metric,
        "batch_size": args.batch_size,
    }
    if args.shared_seeds:
        rung_objective = build_objective(
            model, ObjectiveConfig(**common, rungs=(*rungs, args.large_n), seed=args.seed)
        )
        truth_objective = None
    else:
        rung_objective = build_objective(
            model, ObjectiveConfig(**common, rungs=tuple(rungs), seed=args.seed)
        )
        truth_objective = build_objective(
            model, ObjectiveConfig(**common, rungs=(args.large_n,), seed=args.truth_seed)
        )

    print(
        f"{len(grid)} schedules, {args.sampler} at {args.nfe} NFE, {args.metric} on "
        f"{rung_objective.extractor.name} features, rungs {rungs}, large N {args.large_n} "
        f"({'shared' if args.shared_seeds else 'independent'} seeds), device {args.device}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    started = time.perf_counter()
    trials = []
    for index, schedule in enumerate(grid):
        result, elapsed = run_rungs(rung_objective, schedule)
        trial = Trial(schedule=schedule, rung_seconds={n: elapsed[n] for n in rungs})
        trial.rung_values = {n: v for n, v in result.rung_values if n in rungs}
        trial.split = {
            "sampling": result.seconds_sampling,
            "features": result.seconds_features,
            "rest": result.seconds_total - result.seconds_sampling - result.seconds_features,
        }
        if truth_objective is None:
            trial.truth = result.value
        else:
            trial.truth = truth_objective.evaluate(schedule).value
        trials.append(trial)
        print(
            f"[{index + 1:2d}/{len(grid)}] {describe(schedule):22s} "
            + " ".join(f"N={n}:{trial.rung_values[n]:8.3f}" for n in rungs)
            + f"  N={args.large_n}:{trial.truth:8.3f}  ({time.perf_counter() - started:6.0f} s)",
            flush=True,
        )

    summary = rank_summary(trials, rungs)
    best = min(trials, key=lambda t: t.truth)
    print(f"\nbest at N={args.large_n}: {describe(best.schedule)}  {args.metric} {best.truth:.4f}")
    print(f"{'N':>6} {'spearman':>9} {'regret':>9} {'regret %':>9} {'s/trial':>9}  picked")
    for row in summary:
        print(
            f"{row['n']:>6} {row['spearman']:>9.3f} {row['regret']:>9.4f} "
            f"{100 * row['regret_relative']:>8.1f}% {row['seconds_per_trial']:>9.2f}  "
            f"{row['picked']}"
        )
    totals = {key: sum(t.split[key] for t in trials) for key in ("sampling", "features", "rest")}
    whole = sum(totals.values())
    print(
        "time of a trial (rung run): "
        + ", ".join(f"{key} {100 * value / whole:.1f}%" for key, value in totals.items())
        + f"; total wall {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        report = {
            "args": {key: str(value) for key, value in vars(args).items()},
            "trials": [
                {
                    "schedule": t.schedule.to_dict(),
                    "rung_values": t.rung_values,
                    "rung_seconds": t.rung_seconds,
                    "truth": t.truth,
                    "split": t.split,
                }
                for t in trials
            ],
            "summary": summary,
            "time_split": totals,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
