"""On a CUDA machine: train the demonstration model, then check and time the GPU path.

    python benchmarks/gpu_train_and_check.py --out OUT_DIR [--mnist DIR] [--budget-seconds 330]

1. Times 50 training steps, then trains ``python -m skiptune.demo.train``'s recipe for as many
   whole thousands of steps as fit in ``--budget-seconds`` (at most 30,000).
2. With the trained model on the GPU: ρ = 1 through ``skip_tuning`` is bit-identical to no
   hooks; per-sample factors equal one schedule per run; the same seeds give the same images
   on the GPU as on the CPU (to float tolerance); sampling throughput at 9 NFE.
Writes ``demo_unet.pt`` and ``gpu_check.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from skiptune.demo.train import DEMO_CONFIG, TrainSettings, _training_images, edm_loss, train
from skiptune.models import load_model
from skiptune.models.native import build_net
from skiptune.sampling import initial_noise, sample
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning


def time_training(device: torch.device, batch_size: int, mnist: str | None) -> float:
    settings = TrainSettings(batch_size=batch_size)
    data = _training_images(settings, mnist).to(device)
    net = build_net("edm-unet", DEMO_CONFIG.to_dict()).to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator(device=device).manual_seed(0)
    for i in range(60):
        if i == 10:
            torch.cuda.synchronize()
            started = time.perf_counter()
        index = torch.randint(len(data), (batch_size,), generator=generator, device=device)
        loss = edm_loss(net, data[index], generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return 50 / (time.perf_counter() - started)


def sample_time(model, noise, nfe: int) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    sample(model, noise, sampler="heun", nfe=nfe)
    torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mnist", default=None)
    parser.add_argument("--budget-seconds", type=float, default=330.0)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    report: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}

    # 1. Train.
    steps_per_second = time_training(device, args.batch_size, args.mnist)
    steps = int(min(30000, steps_per_second * args.budget_seconds) // 1000 * 1000)
    report["train_steps_per_second"] = round(steps_per_second, 1)
    report["train_steps"] = steps
    checkpoint = args.out / "demo_unet.pt"
    started = time.perf_counter()
    train(
        TrainSettings(steps=steps, batch_size=args.batch_size),
        out=checkpoint,
        state_path=Path("/tmp/demo_state.pt"),
        device=device,
        mnist_dir=args.mnist,
        save_every=steps,
    )
    report["train_seconds"] = round(time.perf_counter() - started, 1)

    # 2. The GPU path.
    model = load_model(checkpoint, device="cuda")
    noise = initial_noise(256, model.image_shape, seed=0).to(device)
    plain = sample(model, noise, sampler="heun", nfe=9)
    with skip_tuning(model, TuningSchedule.identity()):
        identity = sample(model, noise, sampler="heun", nfe=9)
    report["rho1_bit_identical_cuda"] = bool(torch.equal(plain, identity))
    candidates = [TuningSchedule(0.6), TuningSchedule(0.8), TuningSchedule(1.0),
                  TuningSchedule(0.7, 0.9)]
    per_sample = [candidates[j % 4] for j in range(256)]
    with skip_tuning(model, per_sample):
        mixed = sample(model, noise, sampler="heun", nfe=9)
    worst = 0.0
    for k, schedule in enumerate(candidates):
        with skip_tuning(model, schedule):
            alone = sample(model, noise, sampler="heun", nfe=9)
        worst = max(worst, float((alone[k::4] - mixed[k::4]).abs().max()))
    report["per_sample_factors_max_abs_diff_cuda"] = worst
    cpu_model = load_model(checkpoint, device="cpu")
    cpu_images = sample(cpu_model, noise[:16].cpu(), sampler="heun", nfe=9)
    report["cpu_vs_cuda_max_abs_diff_16_images"] = float(
        (cpu_images - plain[:16].cpu()).abs().max()
    )
    for batch in (256, 1024, 4096):
        big = initial_noise(batch, model.image_shape, seed=0).to(device)
        sample_time(model, big[:8], 9)  # warm-up
        seconds = sample_time(model, big, 9)
        report[f"sampling_images_per_second_9nfe_batch{batch}"] = round(batch / seconds, 1)
    report["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
