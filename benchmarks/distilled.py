"""Skip-Tuning a distilled model: the consistency-distilled demo model at 1 and 2 NFE.

    python benchmarks/distilled.py --work DIR [--model skiptune/assets/demo_consistency.pt]
        [--teacher skiptune/assets/demo_unet.pt] [--nfe 1 --nfe 2] [--large-n 2000]
        [--truth-seed 1000000] [--teacher-nfe 35] [--threads 1] [--device cpu] [--tag cpu]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

1. **Search.** At each ``--nfe``, one search with skiptune's defaults (no sampler named: the
   model's own, ``consistency``; 10 trials at rungs 16, 64; racing on fresh seeds).
2. **Large N.** ρ = 1, the paper's schedule for consistency-distilled EDM (ρ 0.91 → 0.96,
   Ma et al. 2024, Table 3) and the search's choice are scored at ``--large-n`` images on the
   seeds from ``--truth-seed`` (no search touches them): the FD against MNIST's reference,
   with each gain's paired 95 % bootstrap interval against ρ = 1.
3. **A teacher-style reference.** Without a dataset, the reference could be the teacher's own
   samples at many steps (``--teacher-nfe`` with Heun, ``--large-n`` images on other seeds).
   The same features of every schedule scored above, and of a ρ_bottom sweep at 1 NFE, are
   scored against both references; the Spearman correlation of the two rankings says whether
   the teacher reference ranks schedules as the data reference does.

Every measurement is kept under ``--work`` (a killed run resumes). Prints the table and
writes ``benchmarks/results/distilled_<tag>.json`` and ``.log``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _kept import key_of, save_array  # benchmarks/_kept.py

from skiptune.models import load_model
from skiptune.objectives import (
    ObjectiveSettings,
    bootstrap_indices,
    bootstrap_values,
    build_objective,
    frechet_distance_to_features,
    gaussian_statistics,
    paired_gain_interval,
)
from skiptune.schedule import TuningSchedule
from skiptune.tuner import SearchConfig, quiet_optuna, search

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = TuningSchedule(rho_bottom=1.0, rho_top=1.0)
PAPER_CD = TuningSchedule(rho_bottom=0.91, rho_top=0.96)
SWEEP = (0.5, 0.7, 0.8, 0.9, 1.1)               # ρ_bottom at ρ_top = 1, for the ranking


def say(text: str = "") -> None:
    print(text, flush=True)


def kept(path: Path, measure: Any) -> np.ndarray:
    """The array at ``path``, measured (and written whole) if absent."""
    if path.exists():
        return np.load(path)
    value = np.asarray(measure())
    save_array(path, value)
    return value


def spearman(a: list[float], b: list[float]) -> float:
    ranks_a, ranks_b = (np.argsort(np.argsort(v)) for v in (a, b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_consistency.pt")
    parser.add_argument("--teacher", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, action="append")
    parser.add_argument("--large-n", type=int, default=2000)
    parser.add_argument("--truth-seed", type=int, default=1_000_000)
    parser.add_argument("--teacher-nfe", type=int, default=35)
    parser.add_argument("--teacher-seed", type=int, default=3_000_000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    budgets = sorted(args.nfe or (1, 2))
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_optuna()
    args.work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def report(text: str = "") -> None:
        say(text)
        lines.append(text)

    model = load_model(args.model, device=args.device)
    settings = ObjectiveSettings(rungs=(args.large_n,), batch_size=args.batch_size)
    sampler = model.default_sampler or "heun"

    # The teacher-style reference: the teacher's own samples at many steps.
    teacher = load_model(args.teacher, device=args.device)
    teacher_objective = build_objective(teacher, settings.for_budget(
        sampler="heun", nfe=args.teacher_nfe, seed=args.teacher_seed), progress=False)
    teacher_features = kept(args.work / f"teacher-heun{args.teacher_nfe}.npy", lambda: (
        teacher_objective.evaluate(BASELINE, keep_features=True).features))
    teacher_mu, teacher_sigma = gaussian_statistics(teacher_features)

    results: dict[str, Any] = {"settings": {
        "model": args.model.name, "teacher": args.teacher.name, "nfe": budgets,
        "sampler": sampler, "large_n": args.large_n, "truth_seed": args.truth_seed,
        "teacher_nfe": args.teacher_nfe, "teacher_seed": args.teacher_seed,
        "threads": torch.get_num_threads(), "argv": sys.argv[1:]}, "budgets": []}
    report(f"distilled: {json.dumps(results['settings'])}")
    report(f"FD at N = {args.large_n} on seeds {args.truth_seed}…; gain over ρ = 1 [paired 95 % "
           "bootstrap interval]; 'teacher ref' scores the same features against the teacher's "
           f"Heun {args.teacher_nfe}-NFE samples")
    for nfe in budgets:
        tick = time.perf_counter()
        (summary,) = search(args.model, SearchConfig(nfe=nfe), db=args.work / "search.db",
                            device=args.device)
        found = summary.best_schedule or BASELINE
        objective = build_objective(model, settings.for_budget(
            sampler=sampler, nfe=nfe, seed=args.truth_seed), progress=False)

        def features_of(schedule: TuningSchedule, objective: Any = objective,
                        nfe: int = nfe) -> np.ndarray:
            return kept(args.work / f"nfe{nfe}-{key_of(schedule)}.npy", lambda: (
                objective.evaluate(schedule, keep_features=True).features))

        draws = bootstrap_indices(args.large_n, resamples=200, seed=0)
        baseline = features_of(BASELINE)
        rows = []
        named = [("ρ = 1", BASELINE), ("paper CD 0.91→0.96", PAPER_CD), ("found", found)]
        sweep = [(f"ρ_bottom {b}", TuningSchedule(rho_bottom=b, rho_top=1.0)) for b in SWEEP]
        for name, schedule in named + (sweep if nfe == budgets[0] else []):
            features = features_of(schedule)
            value = objective.score(features)
            low, high = paired_gain_interval(bootstrap_values(features, objective.score, draws),
                                             bootstrap_values(baseline, objective.score, draws))
            rows.append({"name": name, "schedule": schedule.to_dict(), "fd": value,
                         "gain": 1 - value / objective.score(baseline), "gain_low": low,
                         "gain_high": high,
                         "fd_teacher_ref": frechet_distance_to_features(
                             teacher_mu, teacher_sigma, features)})
        order = [r["fd"] for r in rows]
        rho = spearman(order, [r["fd_teacher_ref"] for r in rows])
        results["budgets"].append({
            "nfe": nfe, "rows": rows, "spearman_teacher_vs_data": rho,
            "search": {"study": summary.study_name, "value": summary.best_value,
                       "trials": summary.finished, "blocks": summary.validation_blocks,
                       "race_images": summary.race_images},
            "seconds": round(time.perf_counter() - tick, 1)})
        report()
        report(f"{nfe} NFE ({sampler}), search {summary.finished} trials:")
        for r in rows:
            s = r["schedule"]
            report(f"  {r['name']:>20}: ρ {s['rho_bottom']:.2f}→{s['rho_top']:.2f} {s['shape']:>7}"
                   f"  FD {r['fd']:.3f}  gain {r['gain']:+.1%} [{r['gain_low']:+.1%}, "
                   f"{r['gain_high']:+.1%}]  teacher ref {r['fd_teacher_ref']:.3f}")
        report(f"  Spearman of the two references' rankings over {len(rows)} schedules: {rho:.3f}")
    tag = args.tag or torch.device(args.device).type
    out = RESULTS / f"distilled_{tag}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".log").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
