"""Does a σ window beat the best depth-only schedule? Validated, on the demonstration model.

    python benchmarks/sigma_window.py [--nfe 5 --nfe 9] [--trials 12] [--rungs 16,64]
        [--window 0.01,80] [--json out.json]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

Ma et al. report that ρ matters most at intermediate noise levels. For each budget, two
searches of the same size run into one temporary database under two study groups: the
default depth-only space, and the same space with a σ window searched in --window. Both are
validated as every study is (top 3 and ρ = 1 at 4 × the last rung, seeds no trial used):
the same N and the same seeds, so their validated values compare directly, and the stored
bootstrap replicates (the same resampled indices) give a paired interval of the window's
gain over the depth-only choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import optuna
import torch

from skiptune.objectives import ObjectiveSettings, paired_gain_interval
from skiptune.storage import open_storage
from skiptune.tuner import (
    SearchConfig,
    SearchSpace,
    quiet_optuna,
    search,
    validation_result,
)

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"


def replicates(db: Path, name: str) -> np.ndarray:
    """The bootstrap replicates of the study's validated choice."""
    study = optuna.load_study(study_name=name, storage=open_storage(db).optuna_storage())
    result = validation_result(study)
    assert result is not None
    plan = study.user_attrs["skiptune_validation"]
    for attr in plan["candidates"]:
        stored = study.user_attrs[attr]
        if stored["trial"] == result.chosen.trial:
            return np.array(stored["replicates"])
    raise RuntimeError(f"{name}: the chosen candidate has no replicates")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--nfe", type=int, action="append")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rungs", default="16,64")
    parser.add_argument("--window", default="0.01,80")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)
    quiet_optuna()
    rungs = tuple(int(n) for n in args.rungs.split(","))
    window = tuple(float(v) for v in args.window.split(","))
    results = []
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "window.db"
        for nfe in args.nfe or [5, 9]:
            row: dict[str, object] = {"nfe": nfe}
            names = {}
            for label, space in (("depth", SearchSpace()),
                                 ("window", SearchSpace(sigma_window=window))):
                config = SearchConfig(nfe=nfe, trials=args.trials, space=space,
                                      group=f"sw-{label}",
                                      objective=ObjectiveSettings(rungs=rungs))
                (summary,) = search(args.model, config, db=db, device=args.device)
                names[label] = summary.study_name
                row[label] = {"schedule": summary.best_schedule.to_dict()  # type: ignore[union-attr]
                              , "validated": summary.best_value,
                              "search": summary.search_best_value,
                              "baseline": summary.baseline_value,
                              "n": summary.validation_num_samples}
                print(f"{nfe} NFE {label}: {row[label]}", flush=True)
            low, high = paired_gain_interval(replicates(db, names["window"]),
                                             replicates(db, names["depth"]))
            depth, windowed = row["depth"], row["window"]
            gain = 1 - windowed["validated"] / depth["validated"]  # type: ignore[index]
            row["window_gain_over_depth"] = {"gain": gain, "low": low, "high": high}
            print(f"{nfe} NFE: window vs depth-only, validated gain {gain:.1%} "
                  f"[{low:.1%}, {high:.1%}] (95% paired bootstrap)", flush=True)
            results.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
