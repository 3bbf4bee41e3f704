"""How well ``--ref self`` ranks skip schedules, against the MNIST reference (issue 22).

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/self_reference.py \
        [--samples 1000] [--self-ref self] [--device cpu] \
        [--out benchmarks/results/self_reference_cpu]

On the demonstration model at 9 NFE (Heun), 16 schedules around its optimum (ρ_bottom
0.4…1.0, ρ_top 0.8…1.0, linear, power and cosine shapes, ρ = 1 included) each draw N
samples once, on seeds 0 … N − 1, and the samples' digit features are scored twice: against
the shipped MNIST reference and against ``--ref self`` (the model's own samples at ρ = 1,
Heun at 35 NFE by default for this 28×28 model, on seeds from 2⁶²). Prints and writes
(``OUT.json``, ``OUT.log``): the Spearman correlation of the two rankings, the winner under
each reference with its FD under the other, and each winner and ρ = 1 validated against MNIST
on N fresh seeds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from skiptune import TuningSchedule, load_model
from skiptune.objectives import DirectoryStatisticsCache, ObjectiveConfig, build_objective

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "skiptune" / "assets" / "demo_unet.pt"
SAMPLER, NFE = "heun", 9
FRESH_SEED = 1_000_000                  # validation: seeds no ranking sample uses

SCHEDULES = [
    TuningSchedule(rho_bottom=1.0),                                   # ρ = 1, the baseline
    *(TuningSchedule(rho_bottom=b) for b in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
    *(TuningSchedule(rho_bottom=b, rho_top=t) for b, t in ((0.6, 0.9), (0.7, 0.9), (0.5, 0.8),
                                                          (0.8, 0.8))),
    TuningSchedule(rho_bottom=0.6, shape="power", gamma=0.5),
    TuningSchedule(rho_bottom=0.6, shape="power", gamma=2.0),
    TuningSchedule(rho_bottom=0.7, shape="power", gamma=2.0),
    TuningSchedule(rho_bottom=0.6, shape="cosine"),
    TuningSchedule(rho_bottom=0.5, rho_top=0.9, shape="cosine"),
]


def _label(schedule: TuningSchedule) -> str:
    shape = schedule.shape + (f" γ={schedule.gamma:g}" if schedule.shape == "power" else "")
    return f"{schedule.rho_bottom:g}→{schedule.rho_top:g} {shape}"


def measure(*, samples: int, self_ref: str, device: str, batch_size: int) -> dict:
    torch.set_num_threads(1)
    model = load_model(DEMO, device=device)
    config = ObjectiveConfig(sampler=SAMPLER, nfe=NFE, rungs=(samples,), batch_size=batch_size)
    mnist = build_objective(model, config)
    started = time.perf_counter()
    own = build_objective(model, ObjectiveConfig(**{**config.to_dict(), "reference": self_ref,
                                                    "rungs": (samples,)}),
                          cache=DirectoryStatisticsCache(),
                          on_reference=lambda spec, done, total: print(
                              f"  {spec}: {done}/{total}", flush=True))
    reference_seconds = time.perf_counter() - started
    print(f"self-reference {own.reference.source}: {reference_seconds:.0f} s", flush=True)
    rows = []
    for schedule in SCHEDULES:
        tick = time.perf_counter()
        evaluation = mnist.evaluate(schedule, keep_features=True)   # drawn once, scored twice
        assert evaluation.features is not None
        row = {"schedule": schedule.to_dict(), "label": _label(schedule),
               "fd_mnist": evaluation.value, "fd_self": own.score(evaluation.features),
               "seconds": round(time.perf_counter() - tick, 1)}
        print(f"  {row['label']:<28} FD mnist {row['fd_mnist']:8.3f}   FD self "
              f"{row['fd_self']:8.3f}   ({row['seconds']} s)", flush=True)
        rows.append(row)
    mnist_values = np.array([r["fd_mnist"] for r in rows])
    self_values = np.array([r["fd_self"] for r in rows])
    rho = float(spearmanr(mnist_values, self_values).statistic)
    best_mnist, best_self = rows[int(mnist_values.argmin())], rows[int(self_values.argmin())]
    # Each winner, and ρ = 1, validated against MNIST on N fresh seeds no ranking sample used.
    fresh = build_objective(model, ObjectiveConfig(**{**config.to_dict(), "seed": FRESH_SEED}))
    validated = {}
    for row in (rows[0], best_mnist, best_self):
        if row["label"] not in validated:
            value = fresh.evaluate(TuningSchedule(**row["schedule"])).value
            validated[row["label"]] = value
            print(f"  validated {row['label']:<28} FD mnist {value:8.3f} (fresh seeds)",
                  flush=True)
    return {
        "model": str(DEMO.relative_to(ROOT)), "sampler": SAMPLER, "nfe": NFE,
        "samples_per_schedule": samples, "seeds": [0, samples - 1],
        "self_reference": own.self_reference.to_dict() if own.self_reference else None,
        "self_reference_seconds": round(reference_seconds, 1),
        "spearman": rho, "schedules": rows,
        "winner_mnist": {"label": best_mnist["label"], "fd_mnist": best_mnist["fd_mnist"],
                         "fd_self": best_mnist["fd_self"],
                         "fd_mnist_fresh": validated[best_mnist["label"]]},
        "winner_self": {"label": best_self["label"], "fd_self": best_self["fd_self"],
                        "fd_mnist": best_self["fd_mnist"],
                        "fd_mnist_fresh": validated[best_self["label"]]},
        "baseline": {"fd_mnist": rows[0]["fd_mnist"], "fd_self": rows[0]["fd_self"],
                     "fd_mnist_fresh": validated[rows[0]["label"]]},
        "fresh_seeds": [FRESH_SEED, FRESH_SEED + samples - 1],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }


def _winner_line(name: str, winner: dict, own: str, other: str) -> str:
    return (f"winner under {name}: {winner['label']}  {own} {winner[own]:.3f}, "
            f"{other} {winner[other]:.3f}; validated FD mnist {winner['fd_mnist_fresh']:.3f} "
            "on fresh seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--self-ref", default="self")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=125)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                        / "self_reference_cpu")
    args = parser.parse_args()
    result = measure(samples=args.samples, self_ref=args.self_ref, device=args.device,
                     batch_size=args.batch_size)
    lines = [
        f"Spearman ρ (rankings under --ref {args.self_ref} vs MNIST, {len(SCHEDULES)} schedules, "
        f"N = {args.samples} each, {SAMPLER} {NFE} NFE): {result['spearman']:.3f}",
        _winner_line("MNIST", result["winner_mnist"], "fd_mnist", "fd_self"),
        _winner_line("self", result["winner_self"], "fd_self", "fd_mnist"),
        f"ρ = 1: FD mnist {result['baseline']['fd_mnist']:.3f}, FD self "
        f"{result['baseline']['fd_self']:.3f}; validated FD mnist "
        f"{result['baseline']['fd_mnist_fresh']:.3f} on fresh seeds",
    ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    args.out.with_suffix(".log").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
