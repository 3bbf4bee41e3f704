"""The demonstration model's quality figures (issue: the demonstration model).

    python benchmarks/demo_quality.py [--samples 1000] [--device cpu] [--json out.json]
                                      [--model candidate.pt]

Prints, for 1,000 samples (seeds 0..999) unless told otherwise:
1. at 35 NFE (Heun, 18 steps): the share of samples the digit feature network classifies
   with confidence ≥ 0.9 (and, for comparison, the share of the 2,000 real held-out digits),
   and the share of each digit class;
2. the domain FID (digit features, against the shipped MNIST reference statistics) at
   5, 9, 15, 35 NFE for Heun and 5, 9, 15 NFE for DPM-Solver++(2M), ρ = 1;
3. a hand-run sweep of ρ_bottom ∈ {0.5, 0.6, …, 1.1} (ρ_top = 1, linear) at 9 NFE (Heun).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from skiptune import TuningSchedule, initial_noise, load_model, sample
from skiptune.data.mnist import load_mnist, split_indices
from skiptune.objectives import ObjectiveConfig, build_objective, load_feature_extractor

ASSETS = Path(__file__).resolve().parent.parent / "skiptune" / "assets"


def classifier_report(model, *, num_samples: int, batch_size: int, device: torch.device) -> dict:
    """Confidence and class balance of the digit classifier on samples at 35 NFE (Heun),
    with the confident share of the real held-out digits for comparison."""
    extractor = load_feature_extractor("digits", device=device)

    def confidence_and_label(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():  # the classifier whose penultimate layer gives the features
            logits = extractor.net(extractor.prepare(images.to(device)))
        return logits.softmax(dim=1).cpu().max(dim=1)

    confident, counts = 0, torch.zeros(10, dtype=torch.long)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        noise = initial_noise(n, model.image_shape, seed=0, start=start)
        confidence, label = confidence_and_label(sample(model, noise, sampler="heun", nfe=35))
        confident += int((confidence >= 0.9).sum())
        counts += torch.bincount(label, minlength=10)
    shares = (counts.double() / num_samples).tolist()
    digits, _labels = load_mnist()
    _train, held_out = split_indices(len(digits), **model.metadata["split"])
    real = torch.from_numpy(digits[held_out]).float().div(127.5).sub(1.0).unsqueeze(1)
    real_confidence, _ = confidence_and_label(real)
    return {
        "confident_share": confident / num_samples,
        "real_held_out_confident_share": round(float((real_confidence >= 0.9).double().mean()), 4),
        "class_shares": [round(s, 4) for s in shares],
        "min_class_share": min(shares),
        "max_class_share": max(shares),
    }


def fid(model, schedule: TuningSchedule, *, sampler: str, nfe: int, num_samples: int, batch: int,
        device: torch.device) -> float:
    config = ObjectiveConfig(sampler=sampler, nfe=nfe, rungs=(num_samples,), batch_size=batch)
    return build_objective(model, config, device=device).evaluate(schedule).value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the figures here, after each part (a stopped run keeps them)")
    parser.add_argument("--model", type=Path, default=ASSETS / "demo_unet.pt",
                        help="a candidate checkpoint (default: the shipped demo model)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(args.model, device=device)
    n, b = args.samples, args.batch_size
    started = time.perf_counter()
    report: dict = {"samples": n, "device": str(device), "model": model.fingerprint[:16]}

    def keep() -> None:
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))

    report["classifier_35nfe"] = classifier_report(model, num_samples=n, batch_size=b,
                                                   device=device)
    print(json.dumps(report["classifier_35nfe"]))
    keep()
    curve: dict[str, float] = {}
    report["fid_rho1"] = curve
    for sampler, budgets in (("heun", (5, 9, 15, 35)), ("dpmpp_2m", (5, 9, 15))):
        for nfe in budgets:
            value = fid(model, TuningSchedule.identity(), sampler=sampler, nfe=nfe, num_samples=n,
                        batch=b, device=device)
            curve[f"{sampler}@{nfe}"] = round(value, 3)
            keep()
            print(f"FID {sampler:9s} {nfe:3d} NFE  {value:8.3f}")
    sweep: dict[str, float] = {}
    report["rho_sweep_heun9"] = sweep
    for rho_bottom in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1):
        if rho_bottom == 1.0:    # ρ = 1 everywhere: the curve's Heun 9 NFE point, same seeds
            value = curve["heun@9"]
        else:
            value = fid(model, TuningSchedule(rho_bottom, 1.0), sampler="heun", nfe=9,
                        num_samples=n, batch=b, device=device)
        sweep[f"{rho_bottom:.1f}"] = round(value, 3)
        keep()
        print(f"FID heun 9 NFE  rho_bottom {rho_bottom:.1f}  {value:8.3f}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    keep()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
