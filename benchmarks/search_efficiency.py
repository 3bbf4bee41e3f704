"""How many trials and seconds does skiptune's search need to match an exhaustive grid of ρ?

    python benchmarks/search_efficiency.py [--nfe 9] [--sampler heun] [--rungs 16,64]
        [--grid 6] [--trials 30] [--large-n 192] [--shapes linear] [--threads 1]
        [--device cpu] [--json out.json]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

On the demonstration model at --nfe:

1. **Grid.** Linear schedules on a --grid × --grid lattice of (ρ_bottom, ρ_top) spanning the
   search's default space (0.3 … 1.2 each), every point scored by the same proxy objective the
   search uses, at its last rung N (same sampler, NFE, metric, features, reference, seeds),
   without pruning. Its wall time is the grid's cost; its pick is the lowest proxy value.
2. **Search.** skiptune's own ``search(...)`` (TPE by default, pruning on, rungs --rungs) into
   a temporary SQLite database for --trials trials, with the space restricted to --shapes
   (default linear, like the grid). Its trials are read back in order; after each one the
   incumbent is the best proxy value among the COMPLETE trials so far. The first four trials
   are the ones skiptune always queues: the baseline ρ = 1 and the paper's three schedules.
3. **Large N.** Only the grid's --top picks by proxy and every distinct incumbent of the
   search are scored again at --large-n samples from disjoint seeds (offset --truth-seed),
   the "large-N FID". The target is the large-N value of the grid's pick; a stricter one,
   the best large-N value among the grid's top picks, is reported too.

Prints the grid (N, points, wall time), each search trial (state, proxy value, incumbent, the
incumbent's large-N gap to the target), the trials and search seconds after which the incumbent
first comes within --tolerance (1%) of the target, and the ratios search/grid in seconds,
trials and generated samples. Search seconds are measured from the study's start (after model
loading and setup, reported apart) to the end of the trial. Samples are load-independent, so
they are the fairer ratio on a contended machine.

On two contended CPU cores, one torch thread was 5–10× faster than two (0.24 s per sample at
9 NFE against 1.2–2.4 s): --threads defaults to 1 on CPU. With the defaults the run generates
about 5,000 samples: about 20 minutes there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from skiptune.errors import NonFiniteSampleError
from skiptune.models import load_model
from skiptune.objectives import ObjectiveConfig, ObjectiveSettings, build_objective
from skiptune.schedule import TuningSchedule
from skiptune.tuner import (
    SearchConfig,
    SearchSpace,
    TrialFinished,
    quiet_optuna,
    search,
)
from skiptune.tuner.study import role_of, schedule_from_params

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"


def describe(schedule: TuningSchedule) -> str:
    shape = schedule.shape if schedule.shape != "power" else f"power{schedule.gamma:.2g}"
    return f"{schedule.rho_bottom:.3f}→{schedule.rho_top:.3f} {shape}"


def key_of(schedule: TuningSchedule) -> tuple[float, float, str, float]:
    return (
        round(schedule.rho_bottom, 9),
        round(schedule.rho_top, 9),
        schedule.shape,
        round(schedule.gamma, 9),
    )


def score(objective: Any, schedule: TuningSchedule) -> tuple[float, float]:
    """(value, seconds); a schedule whose samples are non-finite scores +inf."""
    started = time.perf_counter()
    try:
        value = float(objective.evaluate(schedule).value)
    except NonFiniteSampleError:
        value = math.inf
    if not math.isfinite(value):
        value = math.inf
    return value, time.perf_counter() - started


@dataclass
class SearchTrial:
    """One trial of the search as read back from the study, plus its timing."""

    number: int
    role: str
    state: str
    schedule: TuningSchedule
    value: float | None
    samples: int                           # images generated (last rung reached)
    seconds: float                         # the trial's own time (TrialFinished.seconds)
    elapsed: float                         # since the study started, at the trial's end
    incumbent: int | None = None           # trial number of the best COMPLETE trial so far
    extra: dict[str, Any] = field(default_factory=dict)


def relative_gap(value: float, target: float) -> float:
    return value / target - 1.0 if math.isfinite(value) else math.inf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--nfe", type=int, default=9)
    parser.add_argument("--metric", default="fd", choices=("fd", "kid"))
    parser.add_argument("--rungs", default="16,64", help="the search's rungs; grid scores at last")
    parser.add_argument("--grid", type=int, default=6, help="points per axis of the ρ grid")
    parser.add_argument("--trials", type=int, default=30, help="trials of the search")
    parser.add_argument("--optimizer", default="tpe")
    parser.add_argument("--no-pruning", action="store_true")
    parser.add_argument("--shapes", default="linear", help="the search's shapes, comma-separated")
    parser.add_argument("--large-n", type=int, default=192, help="N of the large-N FID")
    parser.add_argument("--top", type=int, default=3, help="grid picks scored at large N")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative, 0.01 = 1%%")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="noise seed and optimizer seed")
    parser.add_argument("--truth-seed", type=int, default=1_000_000, help="seed of large-N run")
    parser.add_argument("--skip-check", action="store_true",
                        help="skip re-scoring ρ = 1 to check the grid measures as the search")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1 on CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    threads = args.threads or (1 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    quiet_optuna()

    rungs = tuple(sorted(int(n) for n in args.rungs.split(",")))
    n_final = rungs[-1]
    if args.large_n <= n_final:
        parser.error(f"--large-n ({args.large_n}) must exceed the last rung ({n_final})")
    if args.grid < 2:
        parser.error("--grid must be at least 2")
    space = SearchSpace(shapes=tuple(s.strip() for s in args.shapes.split(",")))
    bottoms = np.linspace(*space.rho_bottom, args.grid)
    tops = np.linspace(*space.rho_top_bounds(), args.grid)
    grid = [
        TuningSchedule(round(float(b), 4), rho_top=round(float(t), 4))
        for b in bottoms for t in tops
    ]
    common = {"metric": args.metric, "batch_size": args.batch_size}

    # ---- 1. the exhaustive grid, at the search's last rung N ------------------------------
    setup_started = time.perf_counter()
    model = load_model(args.model, device=args.device)
    proxy = build_objective(
        model,
        ObjectiveConfig(sampler=args.sampler, nfe=args.nfe, rungs=(n_final,), seed=args.seed,
                        **common),
        device=args.device,
    )
    truth = build_objective(
        model,
        ObjectiveConfig(sampler=args.sampler, nfe=args.nfe, rungs=(args.large_n,),
                        seed=args.truth_seed, **common),
        device=args.device,
    )
    grid_setup = time.perf_counter() - setup_started
    print(
        f"{args.sampler} at {args.nfe} NFE, {args.metric} on {proxy.extractor.name} features, "
        f"device {args.device}, {torch.get_num_threads()} threads\n"
        f"grid: {len(grid)} linear schedules ({args.grid} × {args.grid}, ρ_bottom "
        f"{bottoms[0]:.2f}…{bottoms[-1]:.2f}, ρ_top {tops[0]:.2f}…{tops[-1]:.2f}), each at "
        f"N = {n_final} (seed {args.seed}), no pruning",
        flush=True,
    )
    grid_values: list[float] = []
    grid_seconds: list[float] = []
    grid_started = time.perf_counter()
    for index, schedule in enumerate(grid):
        value, seconds = score(proxy, schedule)
        grid_values.append(value)
        grid_seconds.append(seconds)
        print(
            f"  [{index + 1:2d}/{len(grid)}] {describe(schedule):22s} proxy {value:9.4f}  "
            f"({seconds:5.1f} s, {time.perf_counter() - grid_started:6.0f} s)",
            flush=True,
        )
    grid_wall = time.perf_counter() - grid_started
    grid_samples = len(grid) * n_final
    order = sorted(range(len(grid)), key=lambda i: grid_values[i])
    top = order[: args.top]
    print(f"grid wall time {grid_wall:.1f} s ({grid_wall / grid_samples:.3f} s per sample), "
          f"setup {grid_setup:.1f} s", flush=True)

    # ---- large-N scores, cached by schedule ---------------------------------------------
    large: dict[tuple[float, float, str, float], dict[str, Any]] = {}

    def large_n(schedule: TuningSchedule, why: str) -> float:
        key = key_of(schedule)
        if key not in large:
            value, seconds = score(truth, schedule)
            large[key] = {"schedule": schedule.to_dict(), "value": value, "seconds": seconds,
                          "why": why}
            print(f"  large N = {args.large_n}: {describe(schedule):22s} {value:9.4f}  "
                  f"({seconds:5.1f} s)  [{why}]", flush=True)
        return float(large[key]["value"])

    print(f"large-N FID (N = {args.large_n}, seeds from {args.truth_seed}) of the grid's top "
          f"{len(top)} by proxy only:", flush=True)
    top_truth = [large_n(grid[i], f"grid top {rank + 1}") for rank, i in enumerate(top)]
    target = top_truth[0]                          # the grid's pick
    strict_target = min(top_truth)                 # best of the grid's top picks at large N

    # ---- 2. skiptune's search -----------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="skiptune-efficiency-") as folder:
        db = Path(folder) / "search.db"
        stamps: dict[int, tuple[float, float]] = {}
        clock: dict[str, float] = {}

        def on_event(event: Any) -> None:
            now = time.perf_counter()
            if type(event).__name__ == "StudyStarted":
                clock["study_started"] = now
            elif isinstance(event, TrialFinished):
                stamps[event.trial_number] = (now, event.seconds)
                print(f"  search trial {event.trial_number:2d} {event.state:8s} "
                      f"{describe(TuningSchedule.from_dict(event.schedule)):22s} "
                      f"{'' if event.value is None else f'{event.value:9.4f}'}", flush=True)

        print(f"search: {args.optimizer}, {'no pruning' if args.no_pruning else 'pruning'}, "
              f"rungs {list(rungs)}, shapes {list(space.shapes)}, {args.trials} trials",
              flush=True)
        search_called = time.perf_counter()
        config = SearchConfig(
            nfe=args.nfe,
            sampler=args.sampler,
            trials=args.trials,
            optimizer=args.optimizer,
            space=space,
            seed=args.seed,
            pruning=not args.no_pruning,
            objective=ObjectiveSettings(rungs=rungs, **common),
        )
        summaries = search(str(args.model), config, db=db, device=args.device,
                           on_event=on_event)
        search_end = time.perf_counter()
        study_started = clock.get("study_started", search_called)
        search_setup = study_started - search_called
        study = optuna.load_study(study_name=summaries[0].study_name, storage=f"sqlite:///{db}")
        frozen = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)

    trials: list[SearchTrial] = []
    best_value, best_number = math.inf, None
    for t in frozen:
        reached = max(t.intermediate_values, default=0)
        samples = int(t.user_attrs.get("num_samples", reached))
        stamp, seconds = stamps.get(t.number, (math.nan, math.nan))
        value = float(t.value) if t.state == TrialState.COMPLETE else None
        if value is not None and value < best_value:
            best_value, best_number = value, t.number
        trials.append(SearchTrial(
            number=t.number, role=role_of(t),
            state=t.state.name.lower(), schedule=schedule_from_params(t.params), value=value,
            samples=samples, seconds=seconds, elapsed=stamp - study_started,
            incumbent=best_number,
            extra={"datetime_start": str(t.datetime_start),
                   "datetime_complete": str(t.datetime_complete)},
        ))
    by_number = {t.number: t for t in trials}
    search_samples = sum(t.samples for t in trials)
    search_wall = (trials[-1].elapsed if trials else 0.0)

    # ---- consistency: the grid's objective measures ρ = 1 as the search's baseline ------
    check: dict[str, Any] | None = None
    baseline = next((t for t in trials if t.role == "baseline" and t.value is not None), None)
    if baseline is not None and not args.skip_check:
        value, seconds = score(proxy, baseline.schedule)
        check = {"search_baseline": baseline.value, "grid_objective": value,
                 "equal": bool(abs(value - baseline.value) <= 1e-9 * max(1.0, abs(value)))}
        print(f"check: ρ = 1 by the grid's objective {value:.6f}, by the search "
              f"{baseline.value:.6f} ({'equal' if check['equal'] else 'DIFFERENT'}; "
              f"{seconds:.1f} s, not counted)", flush=True)

    print("large-N FID of each new incumbent of the search:", flush=True)
    incumbent_truth: dict[int, float] = {}
    for t in trials:
        if t.incumbent is not None and t.incumbent not in incumbent_truth:
            incumbent_truth[t.incumbent] = large_n(
                by_number[t.incumbent].schedule, f"search incumbent, trial {t.incumbent}"
            )

    # ---- 3. report ----------------------------------------------------------------------
    def first_within(goal: float) -> tuple[SearchTrial | None, float, SearchTrial | None]:
        """(first trial whose incumbent is within tolerance, closest gap, trial of it)."""
        closest, closest_trial = math.inf, None
        for t in trials:
            if t.incumbent is None:
                continue
            gap = relative_gap(incumbent_truth[t.incumbent], goal)
            if gap < closest:
                closest, closest_trial = gap, t
            if gap <= args.tolerance:
                return t, closest, closest_trial
        return None, closest, closest_trial

    pick = grid[top[0]]
    print(
        f"\ngrid: {len(grid)} points at N = {n_final}, {grid_wall:.1f} s "
        f"({grid_samples} samples); pick {describe(pick)} proxy {grid_values[top[0]]:.4f}, "
        f"large-N {target:.4f}"
    )
    for rank, i in enumerate(top):
        print(f"  grid top {rank + 1}: {describe(grid[i]):22s} proxy {grid_values[i]:9.4f}  "
              f"large-N {top_truth[rank]:9.4f}")
    print(f"\nsearch ({len(trials)} trials, setup {search_setup:.1f} s not counted; gap = "
          f"incumbent's large-N FID vs the grid pick's {target:.4f}):")
    print(f"{'#':>3} {'role':8s} {'state':8s} {'schedule':22s} {'N':>5} {'proxy':>9} "
          f"{'s':>6} {'cum s':>7} {'inc':>4} {'inc large-N':>11} {'gap':>8}")
    for t in trials:
        inc_truth = incumbent_truth.get(t.incumbent, math.nan) if t.incumbent is not None \
            else math.nan
        gap = relative_gap(inc_truth, target) if t.incumbent is not None else math.nan
        t.extra.update({"incumbent_large_n": inc_truth, "gap": gap})
        print(
            f"{t.number:>3} {t.role:8s} {t.state:8s} {describe(t.schedule):22s} {t.samples:>5} "
            f"{'' if t.value is None else f'{t.value:9.4f}':>9} {t.seconds:>6.1f} "
            f"{t.elapsed:>7.1f} {'-' if t.incumbent is None else t.incumbent:>4} "
            f"{inc_truth:>11.4f} {100 * gap:>7.2f}%"
        )

    results: dict[str, Any] = {}
    for label, goal in (("grid_pick", target), ("best_of_grid_top", strict_target)):
        hit, closest, closest_trial = first_within(goal)
        entry: dict[str, Any] = {"target_large_n": goal, "within": hit is not None,
                                 "closest_gap": closest,
                                 "closest_at_trial": None if closest_trial is None
                                 else closest_trial.number}
        if hit is not None:
            done = trials[: trials.index(hit) + 1]
            samples = sum(t.samples for t in done)
            entry.update({
                "trials": len(done), "trial_number": hit.number, "seconds": hit.elapsed,
                "samples": samples, "incumbent": hit.incumbent,
                "incumbent_schedule": by_number[hit.incumbent].schedule.to_dict(),
                "gap": relative_gap(incumbent_truth[hit.incumbent], goal),
                "ratio_seconds": hit.elapsed / grid_wall,
                "ratio_trials": len(done) / len(grid),
                "ratio_samples": samples / grid_samples,
            })
        results[label] = entry

    print(f"\nsearch: {len(trials)} trials, {search_wall:.1f} s ({search_samples} samples, "
          f"{sum(t.seconds for t in trials) / max(search_samples, 1):.3f} s per sample in "
          f"trials); grid: {len(grid)} points, {grid_wall:.1f} s ({grid_samples} samples, "
          f"{grid_wall / grid_samples:.3f} s per sample)")
    tol = f"{100 * args.tolerance:g}%"
    for label, text in (("grid_pick", "the grid's pick"),
                        ("best_of_grid_top", f"the best of the grid's top {len(top)}")):
        entry = results[label]
        if entry["within"]:
            print(
                f"within {tol} of {text} (large-N {entry['target_large_n']:.4f}): after "
                f"{entry['trials']} trials (trial {entry['trial_number']}, incumbent trial "
                f"{entry['incumbent']}, gap {100 * entry['gap']:+.2f}%), {entry['seconds']:.1f} s, "
                f"{entry['samples']} samples\n"
                f"  ratio search/grid: seconds {entry['ratio_seconds']:.3f}, trials "
                f"{entry['trials']}/{len(grid)} = {entry['ratio_trials']:.3f}, samples "
                f"{entry['ratio_samples']:.3f}"
            )
        else:
            print(
                f"NOT within {tol} of {text} (large-N {entry['target_large_n']:.4f}) in "
                f"{len(trials)} trials ({search_wall:.1f} s); closest gap "
                f"{100 * entry['closest_gap']:+.2f}% at trial {entry['closest_at_trial']}"
            )
    print("(large-N FID computed only for the grid's top picks and the search's incumbents)")

    if args.json:
        report = {
            "args": {key: str(value) for key, value in vars(args).items()},
            "threads": torch.get_num_threads(),
            "rungs": list(rungs),
            "n_final": n_final,
            "large_n": args.large_n,
            "grid": {
                "points": len(grid),
                "per_axis": args.grid,
                "wall_seconds": grid_wall,
                "setup_seconds": grid_setup,
                "samples": grid_samples,
                "schedules": [
                    {"schedule": s.to_dict(), "proxy": v, "seconds": sec}
                    for s, v, sec in zip(grid, grid_values, grid_seconds, strict=True)
                ],
                "top": [
                    {"schedule": grid[i].to_dict(), "proxy": grid_values[i],
                     "large_n": top_truth[rank]}
                    for rank, i in enumerate(top)
                ],
            },
            "search": {
                "study": summaries[0].study_name,
                "optimizer": args.optimizer,
                "pruning": not args.no_pruning,
                "shapes": list(space.shapes),
                "trials": len(trials),
                "wall_seconds": search_wall,
                "setup_seconds": search_setup,
                "call_seconds": search_end - search_called,
                "samples": search_samples,
                "trial_log": [
                    {"number": t.number, "role": t.role, "state": t.state,
                     "schedule": t.schedule.to_dict(), "proxy": t.value, "samples": t.samples,
                     "seconds": t.seconds, "elapsed": t.elapsed, "incumbent": t.incumbent,
                     **t.extra}
                    for t in trials
                ],
            },
            "large_n_scores": list(large.values()),
            "check_rho_1": check,
            "tolerance": args.tolerance,
            "within": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
