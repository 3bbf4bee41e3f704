"""The paper's protocol against skiptune's search with validation: quality and images sampled.

    python benchmarks/protocol_cost.py [--nfe 9] [--large-n 2000] [--trials N]
        [--rungs A,B] [--threads 1] [--device cpu] [--json out.json] [--sweep-from old.json]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

On the demonstration model at --nfe, Heun:

1. **Paper protocol** (Ma et al., ICML 2024): sweep ρ_bottom over 8 values (linear schedule,
   ρ_top = 1), score each at --large-n images on fresh seeds (from --truth-seed), keep the
   lowest. Images: 8 × --large-n.
2. **skiptune**: ``search(...)`` with skiptune's default settings (trials, rungs, validation
   on seeds no trial used), or --trials and --rungs where given. Images: every rung each
   trial reached, plus the validation's, plus the sample grids' (16 per known point).
3. **Judgement**: skiptune's choice is scored at --large-n on the same fresh seeds as the
   protocol's points (reused when it is one of them). This favours the protocol: its value
   there is the minimum of the eight it chose from (the winner's curse), while skiptune's
   choice meets those seeds for the first time.

Prints each protocol point as it finishes (a long run on a CPU can be read while it goes),
then both choices' large-N FD, the images each protocol sampled and their ratio (target
≤ 1/20). Every line is flushed, so ``nohup ... > log`` holds the progress.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from skiptune.errors import NonFiniteSampleError
from skiptune.models import load_model
from skiptune.objectives import ObjectiveConfig, ObjectiveSettings, build_objective
from skiptune.schedule import TuningSchedule
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, quiet_optuna, search, validation_result
from skiptune.tuner.search._grids import GRID_SAMPLES
from skiptune.tuner.study import grid_artifacts

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"
PAPER_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)     # ρ_bottom, ρ_top = 1


def say(text: str) -> None:
    print(text, flush=True)


def score(objective: Any, schedule: TuningSchedule) -> float:
    """The objective's value; +inf for non-finite samples."""
    try:
        value = float(objective.evaluate(schedule).value)
    except NonFiniteSampleError:
        return math.inf
    return value if math.isfinite(value) else math.inf


def images_of_search(db: Path, study_name: str) -> tuple[int, int, int]:
    """(images the trials sampled, the validation sampled, the sample grids sampled) of a
    finished study. A validated candidate's grid is its validation's first images; the other
    grid trials (known points) cost GRID_SAMPLES each."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(db).optuna_storage())
    trials = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            trials += int(trial.user_attrs.get("num_samples", 0))
        elif trial.intermediate_values:
            trials += int(max(trial.intermediate_values))      # the last rung it reached
    result = validation_result(study)
    validation = 0 if result is None else result.num_samples * len(result.candidates)
    validated = set() if result is None else {c.trial for c in result.candidates}
    grids = GRID_SAMPLES * sum(1 for t in study.get_trials(deepcopy=False)
                               if grid_artifacts(t) and t.number not in validated)
    return trials, validation, grids


def earlier_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The paper sweep of an earlier run's JSON, refused unless it measured the same points."""
    earlier = json.loads(args.sweep_from.read_text())
    if (earlier["nfe"], earlier["large_n"], earlier["truth_seed"]) != (
            args.nfe, args.large_n, args.truth_seed):
        sys.exit(f"{args.sweep_from} measured NFE {earlier['nfe']}, N {earlier['large_n']}, "
                 f"seed {earlier['truth_seed']}: not this run's sweep")
    say(f"paper sweep: reused from {args.sweep_from} (same NFE, N and seeds)")
    return list(earlier["paper_sweep"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, default=9)
    parser.add_argument("--large-n", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--rungs", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth-seed", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sweep-from", type=Path, default=None,
                        help="reuse the paper sweep of an earlier run's --json (same NFE, N "
                             "and seeds) instead of measuring it again")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    quiet_optuna()
    say(f"protocol_cost: demo model, heun {args.nfe} NFE, large N = {args.large_n} "
        f"(seeds {args.truth_seed}…), device {args.device}, "
        f"{torch.get_num_threads()} thread(s)")

    # skiptune first: it is the short part, and its choice is then scored with the sweep.
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "search.db"
        given: dict[str, Any] = {} if args.rungs is None else {
            "rungs": tuple(int(n) for n in args.rungs.split(","))}
        config = SearchConfig(nfe=args.nfe, seed=args.seed,
                              **({} if args.trials is None else {"trials": args.trials}),
                              objective=ObjectiveSettings(batch_size=args.batch_size, **given))
        (summary,) = search(args.model, config, db=db, device=args.device)
        trial_images, validation_images, grid_images = images_of_search(db, summary.study_name)
    search_seconds = time.perf_counter() - started
    chosen = summary.best_schedule
    assert chosen is not None
    say(f"skiptune: {summary.finished} trials, chose {chosen.to_dict()} (validated "
        f"{summary.best_value:.4g} at N = {summary.validation_num_samples}, search "
        f"{summary.search_best_value:.4g}; gain {summary.improvement:.1%} "
        f"[{summary.gain_low:.1%}, {summary.gain_high:.1%}]); images {trial_images} in "
        f"trials + {validation_images} in validation + {grid_images} in sample grids; "
        f"{search_seconds:.0f} s")

    model = load_model(args.model, device=args.device)
    truth = build_objective(model, ObjectiveConfig(
        sampler="heun", nfe=args.nfe, rungs=(args.large_n,), seed=args.truth_seed,
        batch_size=args.batch_size), device=model.device)
    sweep = earlier_sweep(args) if args.sweep_from is not None else []
    for bottom in PAPER_SWEEP[len(sweep):]:
        tick = time.perf_counter()
        value = score(truth, TuningSchedule(rho_bottom=bottom, rho_top=1.0))
        sweep.append({"rho_bottom": bottom, "fd": value})
        say(f"paper sweep: ρ_bottom {bottom:.1f} → FD {value:.4g} at N = {args.large_n} "
            f"({time.perf_counter() - tick:.0f} s)")
    paper = min(sweep, key=lambda p: p["fd"])
    paper_images = len(PAPER_SWEEP) * args.large_n
    same = next((p for p in sweep if TuningSchedule(rho_bottom=p["rho_bottom"]) == chosen), None)
    skiptune_fd = same["fd"] if same is not None else score(truth, chosen)
    skiptune_images = trial_images + validation_images + grid_images
    ratio = skiptune_images / paper_images
    say(f"paper's choice: ρ_bottom {paper['rho_bottom']:.1f}, FD {paper['fd']:.4g} at "
        f"N = {args.large_n}; images {paper_images}")
    say(f"skiptune's choice: FD {skiptune_fd:.4g} at N = {args.large_n} on the same seeds; "
        f"images {skiptune_images}")
    verdict = "meets" if ratio <= 1 / 20 else "misses"
    say(f"images ratio skiptune / paper = {ratio:.3f} (1/{1 / ratio:.1f}); {verdict} the "
        f"target 1/20; FD skiptune / paper = {skiptune_fd / paper['fd']:.3f}")
    results = {
        "nfe": args.nfe, "large_n": args.large_n, "truth_seed": args.truth_seed,
        "device": args.device, "threads": torch.get_num_threads(),
        "paper_sweep": sweep, "paper_choice": paper, "paper_images": paper_images,
        "skiptune_choice": chosen.to_dict(), "skiptune_fd": skiptune_fd,
        "skiptune_summary": summary.to_dict(), "skiptune_trial_images": trial_images,
        "skiptune_validation_images": validation_images, "skiptune_grid_images": grid_images,
        "images_ratio": ratio,
        "search_seconds": search_seconds,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
