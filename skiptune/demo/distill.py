"""Consistency-distil the demonstration model into a one-to-few-step student.

    python -m skiptune.demo.distill [--steps 2000] [--batch-size 64] [--device cpu|cuda]

Consistency distillation (Song et al. 2023, Algorithm 2) with the demo U-Net as teacher: draw
a training digit y, a step n of EDM's Karras grid t_1 < … < t_N over [σ_min, σ_max] and noise
z; the student f_θ at x = y + t_(n+1)·z must match the target network f_θ⁻ at the point the
teacher's Heun step from t_(n+1) reaches at t_n, in squared error. θ⁻ follows θ as an EMA of
rate μ. The student has the teacher's architecture under the boundary-condition scalings
(:class:`ConsistencyEDMUNet`, f(x; σ_min) = x) and starts from the teacher's weights. The run
is resumable (``--state``, every ``--save-every`` steps), also with a larger ``--steps``; the
target network is written as a skiptune checkpoint to ``--out`` at every save, so a stopped
run leaves a usable student.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from skiptune._files import save_torch_atomically
from skiptune.demo.train import ASSETS, SIGMA_MAX, SIGMA_MIN, fastest_precision, training_images
from skiptune.models import load_model
from skiptune.models.native import save_checkpoint
from skiptune.models.unet import ConsistencyEDMUNet, PreconditionedEDMUNet
from skiptune.sampling import karras_sigmas

__all__ = ["DistillSettings", "consistency_loss", "distill"]


@dataclass(frozen=True)
class DistillSettings:
    """One distillation run; everything that decides the result is here, and stored with it."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-4
    grid_steps: int = 18          # N, the Karras grid's levels (CD's best with L2 on CIFAR-10)
    target_ema: float = 0.95      # μ, the target network's EMA rate (CD's)
    seed: int = 0
    held_out: int = 2000          # the teacher's split: train on its training part only
    precision: str = "fp32"


def consistency_loss(
    student: ConsistencyEDMUNet,
    target: ConsistencyEDMUNet,
    teacher: PreconditionedEDMUNet,
    images: torch.Tensor,
    grid: torch.Tensor,           # [N] Karras levels, ascending: t_1 = σ_min … t_N = σ_max
    generator: torch.Generator,
) -> torch.Tensor:
    """The consistency-distillation loss of one batch (squared error, λ = 1)."""
    count = images.shape[0]
    n = torch.randint(0, len(grid) - 1, (count,), generator=generator, device=images.device)
    t_low, t_high = grid[n].view(-1, 1, 1, 1), grid[n + 1].view(-1, 1, 1, 1)
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    x_high = images + t_high * noise
    with torch.no_grad():
        # The teacher's Heun step from t_high down to t_low (its ODE, Karras et al. Alg. 1).
        d_high = (x_high - teacher(x_high, t_high.flatten())) / t_high
        x_euler = x_high + (t_low - t_high) * d_high
        d_low = (x_euler - teacher(x_euler, t_low.flatten())) / t_low
        x_low = x_high + (t_low - t_high) * 0.5 * (d_high + d_low)
        goal = target(x_low, t_low.flatten())
    return ((student(x_high, t_high.flatten()) - goal) ** 2).mean()


def distill(
    settings: DistillSettings,
    *,
    teacher_path: Path,
    out: Path,
    state_path: Path,
    device: torch.device,
    mnist_dir: str | None = None,
    save_every: int = 100,
) -> Path:
    """Distil (or resume distilling) the teacher and write the student to ``out``."""
    torch.manual_seed(settings.seed)
    teacher_model = load_model(teacher_path, device=device)
    teacher = teacher_model.net
    assert isinstance(teacher, PreconditionedEDMUNet)
    teacher.eval().requires_grad_(False)
    data = training_images(mnist_dir, held_out=settings.held_out, seed=settings.seed).to(device)
    student = ConsistencyEDMUNet(copy.deepcopy(teacher.unet), sigma_data=teacher.sigma_data,
                                 sigma_min=SIGMA_MIN).to(device).train().requires_grad_(True)
    target = copy.deepcopy(student).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    grid = karras_sigmas(settings.grid_steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                         device=device)[:-1].flip(0)
    step, seconds, losses = 0, 0.0, []
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        stored = {**state["settings"], "steps": settings.steps}   # a run may be lengthened
        if stored != asdict(settings):
            raise SystemExit(f"{state_path} was written with other settings {state['settings']}; "
                             "pass the same settings or another --state")
        student.load_state_dict(state["student"])
        target.load_state_dict(state["target"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        step, seconds, losses = state["step"], state["seconds"], list(state["losses"])
        print(f"resuming at step {step} from {state_path}", flush=True)

    def save() -> None:
        save_torch_atomically({
            "settings": asdict(settings), "student": student.state_dict(),
            "target": target.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "step": step, "seconds": seconds,
            "losses": losses,
        }, state_path)
        save_checkpoint(out, target, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, metadata={
            **{k: v for k, v in teacher_model.metadata.items()
               if k in ("dataset", "split", "feature_net", "reference")},
            "distillation": {**asdict(settings), "steps_done": step,
                             "seconds": round(seconds, 1), "teacher": teacher_model.fingerprint,
                             "final_loss": losses[-1][1] if losses else None,
                             "command": "python -m skiptune.demo.distill"},
        })

    bf16 = settings.precision == "bf16"
    running, started = 0.0, time.perf_counter()
    while step < settings.steps:
        index = torch.randint(len(data), (settings.batch_size,), generator=generator,
                              device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = consistency_loss(student, target, teacher, data[index], grid, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for p_target, p in zip(target.parameters(), student.parameters(), strict=True):
                p_target.lerp_(p, 1 - settings.target_ema)
        running += float(loss.detach())
        step += 1
        if step % 20 == 0:
            losses.append((step, running / 20))
            running = 0.0
        if step % save_every == 0 or step == settings.steps:
            seconds, started = seconds + time.perf_counter() - started, time.perf_counter()
            save()
            loss_text = f"{losses[-1][1]:.5f}" if losses else "–"
            print(f"step {step}/{settings.steps}  loss {loss_text}  "
                  f"{seconds / 60:.1f} min  wrote {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = DistillSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--grid-steps", type=int, default=defaults.grid_steps)
    parser.add_argument("--target-ema", type=float, default=defaults.target_ema)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--teacher", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--out", type=Path, default=ASSETS / "demo_consistency.pt")
    parser.add_argument("--state", type=Path, default=Path("runs/demo/distill_state.pt"))
    parser.add_argument("--mnist", default=None, help="folder of the MNIST IDX files")
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = fastest_precision(device) if args.precision == "auto" else args.precision
    settings = DistillSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               grid_steps=args.grid_steps, target_ema=args.target_ema,
                               seed=args.seed, precision=precision)
    distill(settings, teacher_path=args.teacher, out=args.out, state_path=args.state,
            device=device, mnist_dir=args.mnist, save_every=args.save_every)


if __name__ == "__main__":
    main()
