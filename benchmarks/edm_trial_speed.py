"""Time one search trial on full-size EDM networks: seconds, images/s, overhead share.

Builds EDM's CIFAR-10 DDPM++ (EDMPrecond, 55.7 M parameters) and ImageNet-64 ADM
(EDMPrecond, class-conditional, 296 M) with skiptune's own EDM networks at random init
(speed does not depend on the weights) and, for each, times

* a trial's sampling: N images at ``--nfe`` (Heun), batch by batch, as the proxy objective
  draws them: per-seed noise and class labels, skip factors hooked in (ρ_bottom = 0.6 →
  ρ_top = 1), ``skiptune.sample``;
* the bare forward passes that trial needs: ``nfe`` calls of the preconditioned network per
  batch on a ready tensor, without hooks, sampler or noise;

and prints seconds per trial, images/s, the share of the trial spent outside the network
forward (timed inside the same trial, by hooks on the network, so load from other processes
cancels out) and trial/bare (which such load does not cancel). Feature extraction and the
metric are not included: they depend on the feature network (Inception for these models),
not on skiptune's EDM code.

    python benchmarks/edm_trial_speed.py --device cpu -n 8 --batch-size 8
    python benchmarks/edm_trial_speed.py --device cuda            # N = 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from skiptune.models.edm import EDMPrecond, wrap_network
from skiptune.sampling import initial_noise, sample
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning

# EDM's train.py presets (--arch ddpmpp --cond 0 / ImageNet-64 --arch adm), as released.
NETWORKS: dict[str, Callable[[], EDMPrecond]] = {
    "cifar10-32x32-ddpmpp": lambda: EDMPrecond(
        img_resolution=32, img_channels=3, label_dim=0, use_fp16=False, model_type="SongUNet",
        embedding_type="positional", encoder_type="standard", decoder_type="standard",
        channel_mult_noise=1, resample_filter=[1, 1], model_channels=128,
        channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13,
    ),
    "imagenet-64x64-adm": lambda: EDMPrecond(
        img_resolution=64, img_channels=3, label_dim=1000, use_fp16=True,
        model_type="DhariwalUNet", model_channels=192, channel_mult=[1, 2, 3, 4], dropout=0.10,
    ),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _forward_clock(net: torch.nn.Module, device: torch.device) -> Iterator[list[float]]:
    """Sum the seconds spent inside ``net``'s forward while the block runs (synchronising a
    GPU at each entry and exit, so the sum is wall time of the forward passes)."""
    spent = [0.0]
    entered = [0.0]

    def enter(*_: object) -> None:
        _sync(device)
        entered[0] = time.perf_counter()

    def leave(*_: object) -> None:
        _sync(device)
        spent[0] += time.perf_counter() - entered[0]

    handles = [net.register_forward_pre_hook(enter), net.register_forward_hook(leave)]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def time_trial(model, *, n: int, batch_size: int, nfe: int) -> tuple[float, float]:
    """Seconds to sample n images as a trial does (noise, labels, hooks, Heun), and the
    seconds of that spent inside the network's forward."""
    device = model.device
    _sync(device)
    started = time.perf_counter()
    with (_forward_clock(model.net, device) as inside,
          skip_tuning(model, TuningSchedule(rho_bottom=0.6, rho_top=1.0))):
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            noise = initial_noise(count, model.image_shape, seed=0, start=start)
            condition = model.condition_for(range(start, start + count))
            sample(model, noise, sampler="heun", nfe=nfe, condition=condition)
    _sync(device)
    return time.perf_counter() - started, inside[0]


@torch.no_grad()
def time_bare_forwards(model, *, n: int, batch_size: int, nfe: int) -> float:
    """Seconds of the nfe·⌈n/batch⌉ network calls alone, inputs prepared beforehand."""
    device = model.device
    batches = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    inputs = {
        count: (torch.randn(count, *model.image_shape, device=device),
                torch.full((count,), 2.0, device=device),
                model.condition_for(range(count)))
        for count in set(batches)
    }
    _sync(device)
    started = time.perf_counter()
    for count in batches:
        x, sigma, labels = inputs[count]
        for _ in range(nfe):
            model.net(x, sigma, class_labels=labels)
    _sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("-n", "--num-samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--nfe", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is kept")
    parser.add_argument("--models", default=",".join(NETWORKS))
    parser.add_argument("--output", type=Path, default=None, help="also write JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    for name in args.models.split(","):
        net = NETWORKS[name]().to(device)
        model = wrap_network(net)
        params = sum(p.numel() for p in net.parameters())
        n, b, nfe = args.num_samples, min(args.batch_size, args.num_samples), args.nfe
        time_trial(model, n=min(n, b), batch_size=b, nfe=1)          # warm-up
        # Interleaved, so that load from other processes hits both measurements alike; the
        # fastest of each is kept.
        trials, insides, bares = [], [], []
        for _ in range(args.repeats):
            seconds, inside = time_trial(model, n=n, batch_size=b, nfe=nfe)
            trials.append(seconds)
            insides.append(inside)
            bares.append(time_bare_forwards(model, n=n, batch_size=b, nfe=nfe))
        best = min(range(args.repeats), key=trials.__getitem__)
        trial, inside, bare = trials[best], insides[best], min(bares)
        # Measured within the same trial, so load from other processes cancels out.
        outside = 1 - inside / trial
        row = {
            "model": name, "parameters": params, "skips": model.num_skips,
            "fp16": bool(net.use_fp16 and device.type == "cuda"), "n": n, "batch_size": b,
            "nfe": nfe, "seconds_per_trial": trial, "images_per_second": n / trial,
            "seconds_inside_forward": inside, "share_outside_forward": outside,
            "seconds_bare_forwards": bare, "trial_over_bare": trial / bare,
            "trial_runs": trials, "inside_forward_runs": insides, "bare_runs": bares,
        }
        rows.append(row)
        print(f"{name}: {params / 1e6:.1f} M parameters, {model.num_skips} skips, "
              f"N={n} (batch {b}), {nfe} NFE: {trial:.2f} s/trial, {n / trial:.2f} images/s, "
              f"outside the network forward {outside:.2%}; bare forwards {bare:.2f} s "
              f"(trial/bare {trial / bare:.3f})", flush=True)
        del model, net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    print(json.dumps(machine))
    if args.output is not None:
        args.output.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    assert all(math.isfinite(r["seconds_per_trial"]) for r in rows)


if __name__ == "__main__":
    main()
