"""The anytime curve: how good is the schedule a search would report after k images sampled?

    python benchmarks/anytime.py --out DIR [--nfe 9] [--sampler heun]
        [--strategy tpe --strategy random ...] [--seeds 3] [--first-seed 0] [--budget 1024]
        [--checkpoints 64,128,256,512,1024] [--large-n 2000] [--validation 1x128 ...]
        [--validation-at 256,512] [--paper-from benchmarks/results/protocol_cost_cpu.json]
        [--threads 1] [--device cpu]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

On the demonstration model at --nfe with --sampler:

1. **Searches.** For each --strategy (an optimizer, ``tpe``, ``gp``, ``cmaes``, ``random`` or
   ``qmc``, optionally with its rungs: ``tpe@16,64``; default rungs --rungs) and each of
   --seeds search seeds (seeds --first-seed to --seeds − 1: processes sharing DIR can split the
   seeds, and a last run from seed 0 reads them all), skiptune's own ``search(...)`` runs
   without validation, resumed with more trials until its trials have sampled --budget
   images. Each trial costs the images of the last rung it reached (a pruned trial its
   first rung).
2. **Anytime curve.** After k images (each of --checkpoints), the search would report its
   best complete trial so far (lowest proxy value). That schedule is scored once at
   --large-n images on fresh seeds (from --truth-seed): the "large-N FD". Per strategy and
   k: the median and the range over the seeds.
3. **Validation.** For the first strategy, at each trial budget of --validation-at: each
   --validation variant ``KxV`` re-scores the K best distinct schedules and ρ = 1 at V
   images on seeds no trial used (from --validation-seed) and reports the lowest; the
   ``adaptive`` variant scores the 3 best and ρ = 1 at 64 images, doubling to 512 until the
   paired bootstrap interval of the best against the runner-up excludes zero. Images of a
   variant: the trials' k plus what its validation sampled.
4. **Reference line.** The paper's protocol (Ma et al.): 8 values of ρ_bottom at --large-n
   each, 8 × --large-n images, its best large-N FD. ``--paper-from`` reads those eight
   values from ``benchmarks/protocol_cost.py``'s JSON when it measured the same model, NFE,
   sampler, N and seeds; otherwise they are measured here.
5. **Racing** (``--race``). The search's own races (``skiptune.tuner.search.race``) replayed
   on the first strategy's stored runs: races do not change what the optimizer proposes, so
   a racing search of T trials runs the run's first T trials, and at each race checkpoint
   (10, 20, 40, … trials) it races on blocks of 2 × the last rung fresh seeds (from the
   search seed + the last rung, as the search does), ``--race-top-k`` new challengers per
   race number. The curve "STRATEGY racing" reports, at k images, the incumbent of the last
   race whose trials and race blocks together fit in k.

Everything measured is kept under --out (one JSON per search run, per large-N score and one
feature file per validated schedule), so a killed run resumes where it stopped and a later
run with more strategies or seeds reuses every score. The table is printed and written to
``DIR/anytime.json``, the plot to ``DIR/anytime.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from _kept import key_of, save_array, write_json  # benchmarks/_kept.py
from optuna.trial import TrialState

from skiptune.errors import NonFiniteSampleError
from skiptune.models import load_model
from skiptune.objectives import (
    ObjectiveConfig,
    ObjectiveSettings,
    bootstrap_indices,
    bootstrap_values,
    build_objective,
)
from skiptune.schedule import TuningSchedule
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, ValidationSettings, quiet_optuna, search
from skiptune.tuner.search import RaceState, SeedBlocks, race, race_checkpoints
from skiptune.tuner.study import role_of, schedule_from_params

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"
PAPER_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)     # ρ_bottom, ρ_top = 1
ADAPTIVE = (64, 128, 256, 512)                              # adaptive validation's sizes
BASELINE = TuningSchedule(rho_bottom=1.0, rho_top=1.0)


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Strategy:
    optimizer: str
    rungs: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.optimizer}@{','.join(map(str, self.rungs))}"

    @classmethod
    def parse(cls, text: str, default_rungs: tuple[int, ...]) -> Strategy:
        optimizer, _, rungs = text.partition("@")
        return cls(optimizer, tuple(int(n) for n in rungs.split(",")) if rungs else default_rungs)


@dataclass(frozen=True)
class Trial:
    """One finished trial as the curve needs it: its cost in images and what it reports."""

    number: int
    images: int
    value: float | None                  # proxy value at the last rung; None unless complete
    schedule: TuningSchedule
    role: str


def trials_of(db: Path, study_name: str) -> list[Trial]:
    with open_storage(db) as storage:
        study = optuna.load_study(study_name=study_name, storage=storage.optuna_storage())
        rows = []
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.COMPLETE:
                images = int(trial.user_attrs.get("num_samples", 0))
                value = float(trial.value) if trial.value is not None else None
            elif trial.state in (TrialState.PRUNED, TrialState.FAIL):
                images = int(max(trial.intermediate_values, default=0))
                value = None
            else:
                continue
            rows.append(Trial(trial.number, images, value, schedule_from_params(trial.params),
                              role_of(trial)))
    return sorted(rows, key=lambda t: t.number)


def run_search(args: argparse.Namespace, strategy: Strategy, seed: int, out: Path) -> list[Trial]:
    """The trials of one search run to --budget images, from DIR/runs when already done.

    The study lives in DIR/runs/NAME.db while it runs, so a killed run resumes where it
    stopped; once it has its images the trials go to DIR/runs/NAME.json and the database
    and its lock file are removed."""
    path = out / "runs" / f"{strategy.name}-seed{seed}.json"
    if path.exists():
        stored = [Trial(t["number"], t["images"], t["value"],
                        TuningSchedule.from_dict(t["schedule"]), t["role"])
                  for t in json.loads(path.read_text())["trials"]]
        if sum(t.images for t in stored) < args.budget:
            raise SystemExit(f"{path} holds {sum(t.images for t in stored)} images, fewer than "
                             f"--budget {args.budget}: pass another --out for a longer run")
        return stored
    started = time.perf_counter()
    db = path.with_suffix(".db")
    db.parent.mkdir(parents=True, exist_ok=True)
    trials: list[Trial] = []
    while sum(t.images for t in trials) < args.budget:
        spent = sum(t.images for t in trials)
        trials_total = len(trials) + max(1, math.ceil((args.budget - spent) / strategy.rungs[-1]))
        config = SearchConfig(
            nfe=args.nfe, sampler=args.sampler, trials=trials_total,
            optimizer=strategy.optimizer, seed=seed,
            objective=ObjectiveSettings(rungs=strategy.rungs, batch_size=args.batch_size),
            validation=ValidationSettings(enabled=False),
        )
        (summary,) = search(args.model, config, db=db, device=args.device)
        trials = trials_of(db, summary.study_name)
    seconds = time.perf_counter() - started
    write_json(path, {"strategy": strategy.name, "seed": seed, "seconds": seconds,
                      "budget": args.budget,
                      "trials": [{"number": t.number, "images": t.images, "value": t.value,
                                  "schedule": t.schedule.to_dict(), "role": t.role}
                                 for t in trials]})
    for leftover in (db, Path(f"{db}.skiptune-lock")):
        leftover.unlink(missing_ok=True)
    say(f"search {strategy.name} seed {seed}: {len(trials)} trials, "
        f"{sum(t.images for t in trials)} images, {seconds:.0f} s")
    return trials


def prefix(trials: Sequence[Trial], images: int) -> list[Trial]:
    """The trials finished once ``images`` had been sampled (the last one may not fit)."""
    kept, spent = [], 0
    for trial in trials:
        if spent + trial.images > images:
            break
        kept.append(trial)
        spent += trial.images
    return kept


def ranked(trials: Sequence[Trial]) -> list[TuningSchedule]:
    """Distinct schedules of the complete trials, best proxy value first."""
    seen: dict[str, TuningSchedule] = {}
    for trial in sorted((t for t in trials if t.value is not None and math.isfinite(t.value)),
                        key=lambda t: (t.value, t.number)):
        seen.setdefault(key_of(trial.schedule), trial.schedule)
    return list(seen.values())


def is_identity(schedule: TuningSchedule) -> bool:
    """ρ = 1 at every skip (whatever the shape) and no FreeU: the model unchanged."""
    return schedule.rho_bottom == schedule.rho_top == 1.0 and schedule.freeu is None


class Scores:
    """Large-N FD and validation features, each measured once and kept under DIR."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out = args, out
        self.model = load_model(args.model, device=args.device)
        base = ObjectiveConfig(sampler=args.sampler, nfe=args.nfe, batch_size=args.batch_size,
                               rungs=(args.large_n,), seed=args.truth_seed)
        self.truth = build_objective(self.model, base, device=self.model.device, progress=False)
        self.check = self.truth.for_validation(num_samples=max(ADAPTIVE + args.sizes),
                                               seed=args.validation_seed)

    def large_n(self, schedule: TuningSchedule) -> float:
        path = self.out / "truth" / f"{key_of(schedule)}.json"
        if path.exists():
            return float(json.loads(path.read_text())["fd"])
        tick = time.perf_counter()
        try:
            value = float(self.truth.evaluate(schedule).value)
        except NonFiniteSampleError:
            value = math.inf
        write_json(path, {"schedule": schedule.to_dict(), "fd": value,
                          "large_n": self.args.large_n, "seed": self.args.truth_seed})
        say(f"  large-N FD {value:.4g} of {describe(schedule)} "
            f"({time.perf_counter() - tick:.0f} s)")
        return value

    def features(self, schedule: TuningSchedule) -> np.ndarray:
        path = self.out / "validation" / f"{key_of(schedule)}.npy"
        if path.exists():
            return np.load(path)
        evaluation = self.check.evaluate(schedule, keep_features=True)
        assert evaluation.features is not None
        save_array(path, evaluation.features)
        return evaluation.features

    def validated(self, schedule: TuningSchedule, size: int) -> float:
        return float(self.check.score(self.features(schedule)[:size]))

    def block(self, schedule: TuningSchedule, blocks: SeedBlocks, block: int) -> float:
        """The schedule's value on one race block, as the search's race measures it."""
        seed = blocks.seed(block)
        path = self.out / "race" / f"{key_of(schedule)}-{seed}-{blocks.size}.json"
        if path.exists():
            return float(json.loads(path.read_text())["value"])
        objective = self.truth.for_validation(num_samples=blocks.size, seed=seed)
        try:
            value = float(objective.evaluate(schedule).value)
        except NonFiniteSampleError:
            value = math.inf
        write_json(path, {"schedule": schedule.to_dict(), "seed": seed, "n": blocks.size,
                          "value": value})
        return value


def describe(schedule: TuningSchedule) -> str:
    shape = schedule.shape if schedule.shape != "power" else f"power{schedule.gamma:.2g}"
    return f"ρ {schedule.rho_bottom:.3f}→{schedule.rho_top:.3f} {shape}"


def validate(scores: Scores, candidates: list[TuningSchedule], size: int) -> TuningSchedule:
    """The candidate (ρ = 1 among them) with the lowest value at ``size`` validation images."""
    return min(candidates, key=lambda s: scores.validated(s, size))


def validate_adaptively(
    scores: Scores, candidates: list[TuningSchedule]
) -> tuple[TuningSchedule, int]:
    """(choice, images per candidate): sizes double until the paired 95 % interval of the best
    minus the runner-up excludes zero, or the largest size is reached."""
    for size in ADAPTIVE:
        values = sorted(candidates, key=lambda s: scores.validated(s, size))
        if len(values) < 2 or size == ADAPTIVE[-1]:
            return values[0], size
        indices = bootstrap_indices(size, resamples=200, seed=0)
        best, second = (bootstrap_values(scores.features(s)[:size], scores.check.score, indices)
                        for s in values[:2])
        if np.quantile(best - second, 0.975) < 0:
            return values[0], size
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Raced:
    """What a racing search reports at one of its race checkpoints."""

    trials: int
    images: int                      # its trials' images and every race block so far
    schedule: TuningSchedule
    blocks: int                      # race blocks behind the reported schedule


def replay_races(scores: Scores, trials: Sequence[Trial], *, seed: int, last_rung: int,
                 block_size: int, top_k: int, max_blocks: int, budget: int) -> list[Raced]:
    """The search's own races (``skiptune.tuner.search.race``) replayed on a stored run.

    Races do not change what the optimizer proposes (their values are not trials), so a
    racing search of T trials runs exactly the run's first T trials; at each checkpoint the
    race takes the trials finished by then, as the search does with one worker. Checkpoints
    whose trials alone pass ``budget`` images are not raced."""
    blocks = SeedBlocks(first_seed=seed + last_rung, size=block_size)
    measured: set[tuple[str, int]] = set()

    def measure(trial: Trial, block: int) -> float:
        measured.add((key_of(trial.schedule), block))
        return scores.block(trial.schedule, blocks, block)

    state, points = RaceState(), []
    for number, checkpoint in enumerate(race_checkpoints(len(trials)), start=1):
        done = trials[:checkpoint]
        if sum(t.images for t in done) > budget:
            break
        best: dict[str, Trial] = {}
        for trial in sorted((t for t in done if t.value is not None and math.isfinite(t.value)),
                            key=lambda t: (t.value, t.number)):
            best.setdefault(key_of(trial.schedule), trial)
        baseline = next((t for t in done if t.role == "baseline" and t.value is not None), None)
        state = race(state, list(best.values()), checkpoint=checkpoint, number=number,
                     top_k=top_k, max_blocks=max_blocks, key=lambda t: key_of(t.schedule),
                     measure=measure,
                     baseline=baseline)
        if state.incumbent is not None:
            points.append(Raced(trials=checkpoint,
                                images=sum(t.images for t in done) + block_size * len(measured),
                                schedule=best[state.incumbent].schedule, blocks=state.blocks))
    return points


def race_curves(args: argparse.Namespace, scores: Scores, strategy: Strategy,
                runs: dict[tuple[str, int], list[Trial]], seeds: Sequence[int],
                checkpoints: Sequence[int]) -> dict[str, Any]:
    """Each seed's race points, and the curve: at k images, what a racing search whose
    trials and races fit in k images reports (its last race within k)."""
    block_size = 2 * strategy.rungs[-1]                 # the default validation N
    per_seed: dict[str, list[dict[str, Any]]] = {}
    curve: dict[int, list[float]] = {}
    for seed in seeds:
        points = replay_races(scores, runs[strategy.name, seed], seed=seed,
                              last_rung=strategy.rungs[-1], block_size=block_size,
                              top_k=args.race_top_k,
                              max_blocks=ValidationSettings().max_blocks, budget=args.budget)
        per_seed[str(seed)] = [
            {"trials": p.trials, "images": p.images, "blocks": p.blocks,
             "schedule": p.schedule.to_dict(), "fd": scores.large_n(p.schedule)}
            for p in points
        ]
        for k in checkpoints:
            within = [p for p in points if p.images <= k]
            if within:
                curve.setdefault(k, []).append(scores.large_n(within[-1].schedule))
        for p in points:
            fd = scores.large_n(p.schedule)
            say(f"  race seed {seed}: {p.trials:>4} trials, {p.images:>6} images, "
                f"{p.blocks} block(s): {describe(p.schedule)} → FD {fd:.3f}")
    return {"top_k": args.race_top_k, "block_size": block_size, "runs": per_seed,
            "curve": {k: summary(v) for k, v in curve.items() if len(v) == len(seeds)}}


def paper_line(args: argparse.Namespace, scores: Scores) -> dict[str, Any]:
    """The paper's 8-point sweep: its best large-N FD and images, from --paper-from or measured."""
    sweep = [TuningSchedule(rho_bottom=b, rho_top=1.0) for b in PAPER_SWEEP]
    if args.paper_from is not None:
        measured = json.loads(args.paper_from.read_text())
        same = (measured["nfe"], measured["large_n"], measured["truth_seed"]) == (
            args.nfe, args.large_n, args.truth_seed) and args.sampler == "heun"
        if same:
            for schedule, point in zip(sweep, measured["paper_sweep"], strict=True):
                path = scores.out / "truth" / f"{key_of(schedule)}.json"
                if not path.exists():
                    write_json(path, {"schedule": schedule.to_dict(), "fd": point["fd"],
                                      "large_n": args.large_n, "seed": args.truth_seed,
                                      "from": str(args.paper_from)})
        else:
            say(f"{args.paper_from} measured another setting: the sweep is measured here")
    values = [scores.large_n(s) for s in sweep]
    best = int(np.argmin(values))
    return {"fd": values[best], "rho_bottom": PAPER_SWEEP[best],
            "images": len(PAPER_SWEEP) * args.large_n, "sweep": values}


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "low": float(min(values)),
            "high": float(max(values))}


def plot(path: Path, curves: dict[str, dict[int, dict[str, float]]], paper: dict[str, Any],
         baseline: float, validation: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name, curve in curves.items():
        ks = sorted(curve)
        axes.plot(ks, [curve[k]["median"] for k in ks], marker="o", label=name)
        axes.fill_between(ks, [curve[k]["low"] for k in ks], [curve[k]["high"] for k in ks],
                          alpha=0.15)
    for row in validation:
        axes.scatter([row["images"]["median"]], [row["fd"]["median"]], marker="s", s=24,
                     color="black", zorder=3)
        axes.annotate(row["variant"], (row["images"]["median"], row["fd"]["median"]),
                      fontsize=6, xytext=(3, 3), textcoords="offset points")
    axes.axhline(paper["fd"], color="grey", linestyle="--",
                 label=f"paper's sweep ({paper['images']:,} images)")
    axes.axhline(baseline, color="grey", linestyle=":", label="ρ = 1")
    axes.axvline(paper["images"] / 20, color="red", linewidth=0.8, label="1/20 of the sweep")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("images sampled by the search (validation: squares, images included)")
    axes.set_ylabel("large-N FD of the reported schedule")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, default=9)
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--strategy", action="append", default=None)
    parser.add_argument("--rungs", default="32,128")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--checkpoints", default="64,128,256,512,1024")
    parser.add_argument("--large-n", type=int, default=2000)
    parser.add_argument("--truth-seed", type=int, default=1_000_000)
    parser.add_argument("--validation", action="append", default=None)
    parser.add_argument("--validation-at", default="256,512")
    parser.add_argument("--validation-seed", type=int, default=500_000)
    parser.add_argument("--paper-from", type=Path, default=None)
    parser.add_argument("--race", action="store_true",
                        help="also replay the search's races on the first strategy's runs")
    parser.add_argument("--race-top-k", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    quiet_optuna()
    default_rungs = tuple(int(n) for n in args.rungs.split(","))
    strategies = [Strategy.parse(s, default_rungs) for s in args.strategy or ["tpe"]]
    variants = args.validation or ["1x128", "3x128", "1x256", "3x256", "adaptive"]
    args.sizes = tuple(int(v.split("x")[1]) for v in variants if v != "adaptive")
    checkpoints = [int(k) for k in args.checkpoints.split(",")]
    out: Path = args.out
    seeds = range(args.first_seed, args.seeds)
    title = (f"demo model, {args.sampler} {args.nfe} NFE: large-N FD (N = {args.large_n}) "
             f"after k images, median and range over {len(seeds)} search seeds")
    say(f"anytime: {title}; device {args.device}, {torch.get_num_threads()} thread(s)")

    scores = Scores(args, out)
    paper = paper_line(args, scores)
    baseline = scores.large_n(BASELINE)
    say(f"paper's sweep: FD {paper['fd']:.4g} (ρ_bottom {paper['rho_bottom']}) with "
        f"{paper['images']} images; ρ = 1: FD {baseline:.4g}")

    runs = {(s.name, seed): run_search(args, s, seed, out) for s in strategies for seed in seeds}
    curves: dict[str, dict[int, dict[str, float]]] = {}
    for strategy in strategies:
        curve: dict[int, list[float]] = {}
        for seed in seeds:
            for k in checkpoints:
                best = ranked(prefix(runs[strategy.name, seed], k))
                if best:
                    curve.setdefault(k, []).append(scores.large_n(best[0]))
        curves[strategy.name] = {k: summary(v) for k, v in curve.items()
                                 if len(v) == len(seeds)}

    racing = race_curves(args, scores, strategies[0], runs, seeds, checkpoints) if args.race else {}
    if racing:
        curves[f"{strategies[0].name} racing"] = racing.pop("curve")

    validation: list[dict[str, Any]] = []
    default = strategies[0]
    for k in (int(n) for n in args.validation_at.split(",") if n):     # "": none
        for variant in variants:
            fds, images = [], []
            for seed in seeds:
                best = ranked(prefix(runs[default.name, seed], k))
                spent = sum(t.images for t in prefix(runs[default.name, seed], k))
                tuned = [s for s in best if not is_identity(s)]
                if variant == "adaptive":
                    candidates = [BASELINE, *tuned[:3]]
                    choice, size = validate_adaptively(scores, candidates)
                else:
                    top, size = (int(n) for n in variant.split("x"))
                    candidates = [BASELINE, *tuned[:top]]
                    choice = validate(scores, candidates, size)
                fds.append(scores.large_n(choice))
                images.append(spent + size * len(candidates))
            validation.append({"strategy": default.name, "trial_images": k, "variant": variant,
                               "fd": summary(fds), "images": summary(images)})

    say("")
    say(f"{'strategy':<16}" + "".join(f"{k:>22}" for k in checkpoints))
    for name, points in curves.items():
        cells = [f"{points[k]['median']:.2f} [{points[k]['low']:.1f},{points[k]['high']:.1f}]"
                 if k in points else "—" for k in checkpoints]
        say(f"{name:<16}" + "".join(f"{c:>22}" for c in cells))
    say("")
    say(f"validation of {default.name}: trial images, variant → images in all, large-N FD "
        "(median [range])")
    for row in validation:
        say(f"  k = {row['trial_images']:>4}  {row['variant']:<9} {row['images']['median']:>6.0f} "
            f"images  FD {row['fd']['median']:.2f} [{row['fd']['low']:.2f}, "
            f"{row['fd']['high']:.2f}]")
    say(f"paper's sweep: FD {paper['fd']:.2f} with {paper['images']} images "
        f"(1/20: {paper['images'] // 20}); ρ = 1: FD {baseline:.2f}")
    write_json(out / "anytime.json", {
        "title": title, "nfe": args.nfe, "sampler": args.sampler, "seeds": list(seeds),
        "large_n": args.large_n, "truth_seed": args.truth_seed, "device": args.device,
        "threads": torch.get_num_threads(), "budget": args.budget, "paper": paper,
        "baseline_fd": baseline, "curves": {n: {str(k): v for k, v in c.items()}
                                            for n, c in curves.items()},
        "validation": validation, "racing": racing,
    })
    plot(out / "anytime.png", curves, paper, baseline, validation, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
