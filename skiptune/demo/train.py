"""Train the demonstration model: skiptune's EDM U-Net on the MNIST training part.

    python -m skiptune.demo.train [--steps 20000] [--batch-size 128] [--device cpu|cuda]

EDM's training recipe (Karras et al. 2022, section 5): σ drawn log-normally
(P_mean = −1.2, P_std = 1.2), loss weight (σ² + σ_data²)/(σ·σ_data)², and EDM's EMA of the
weights, whose half-life grows with training (5 % of the images seen, at most 500 k).
The run is resumable: it keeps its full state in ``--state`` every ``--save-every``
steps and continues from there when started again with the same arguments. The EMA
weights are written as a skiptune checkpoint to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from skiptune._files import save_torch_atomically
from skiptune.data.mnist import load_mnist, split_indices
from skiptune.errors import ConfigurationError
from skiptune.models.native import build_net, save_checkpoint
from skiptune.models.unet import PreconditionedEDMUNet, UNetConfig

__all__ = ["DEMO_CONFIG", "TrainSettings", "edm_loss", "ema_beta", "fastest_precision", "train"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# 28×28 MNIST, three resolutions (28, 14, 7), two blocks each: 9 skips, ≈1.8 M parameters.
# No dropout: on two CPU cores it cost 14 % of a step, and this short run does not overfit.
DEMO_CONFIG = UNetConfig(
    img_resolution=28,
    in_channels=1,
    out_channels=1,
    model_channels=32,
    channel_mult=(1, 2, 2),
    channel_mult_emb=4,
    num_blocks=2,
    attn_resolutions=(7,),
    dropout=0.0,
    num_groups=8,
    attn_heads_channels=32,
)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
PRECISIONS = ("bf16", "fp32")


@dataclass(frozen=True)
class TrainSettings:
    """One training run; everything that decides the result is here, and stored with it."""

    steps: int = 20000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 500
    # EDM's EMA: a half-life of ema_rampup_ratio × images seen, capped at ema_halflife_images.
    # A fixed decay (0.9995, a 1,400-step half-life) lagged far behind a 7,000-step run.
    ema_halflife_images: int = 500_000
    ema_rampup_ratio: float = 0.05
    # log σ ~ N(p_mean, p_std²). EDM's p_mean is -1.2; -0.6 trains more at high σ, where a
    # digit's shape forms: 91.9 % of samples confident against 87.8 % at -1.2 (9,000 steps).
    p_mean: float = -0.6
    p_std: float = 1.2
    seed: int = 0
    held_out: int = 2000
    # "bf16" runs forward and backward under bfloat16 autocast (the weights, the optimiser and
    # the EMA stay float32): 1.6× faster on CPUs with AVX-512 BF16/AMX, and on GPUs, but
    # emulated and 10× slower than float32 on an AVX2-only CPU (see fastest_precision).
    precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigurationError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )


def edm_loss(
    net: PreconditionedEDMUNet,
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
) -> torch.Tensor:
    """EDM's weighted denoising loss (Karras et al. 2022, eq. 2 with Table 1's σ and weighting)."""
    rnd = torch.randn((images.shape[0],), generator=generator, device=images.device)
    sigma = (rnd * p_std + p_mean).exp()
    sd = net.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    denoised = net(images + noise * sigma.view(-1, 1, 1, 1), sigma)
    return (weight.view(-1, 1, 1, 1) * (denoised - images) ** 2).mean()


def ema_beta(step: int, settings: TrainSettings) -> float:
    """The EMA's decay after ``step`` steps: 0.5 per half-life, counted in training images."""
    images_seen = (step + 1) * settings.batch_size
    halflife = min(settings.ema_halflife_images, images_seen * settings.ema_rampup_ratio)
    return 0.5 ** (settings.batch_size / max(halflife, 1e-8))


def fastest_precision(device: torch.device) -> str:
    """bf16 where the hardware computes it (a CUDA GPU that supports it, a CPU with AVX-512
    or AMX), else fp32: on an AVX2-only CPU bf16 autocast is emulated, and a training step took
    38 s against 3.6 s in fp32 (2 cores, batch 128)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        # oneDNN's own check (AVX-512 BW/VL/DQ, AMX, or Arm with bf16); absent from a torch
        # built without oneDNN, where bf16 would be emulated too.
        native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return "bf16" if native is not None and native() else "fp32"
    return "fp32"


def _lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then a cosine decay to a tenth of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(settings.steps - settings.warmup_steps, 1)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def training_images(mnist_dir: str | None, *, held_out: int, seed: int) -> torch.Tensor:
    """The training part of the MNIST split, as [N, 1, 28, 28] in [-1, 1]."""
    images, _labels = load_mnist(mnist_dir)
    train_idx, _held = split_indices(len(images), held_out=held_out, seed=seed)
    pixels = torch.from_numpy(images[train_idx]).float()
    return (pixels / 127.5 - 1.0).unsqueeze(1)


def train(
    settings: TrainSettings,
    *,
    out: Path,
    state_path: Path,
    device: torch.device,
    mnist_dir: str | None = None,
    save_every: int = 1000,
    console: Console | None = None,
) -> Path:
    """Train (or resume) the demonstration model and write its EMA weights to ``out``."""
    console = console or Console()
    torch.manual_seed(settings.seed)
    data = training_images(mnist_dir, held_out=settings.held_out, seed=settings.seed).to(device)
    net = build_net("edm-unet", DEMO_CONFIG.to_dict()).to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    step, seconds, losses = 0, 0.0, []

    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state["settings"] != settings.__dict__:
            raise SystemExit(
                f"{state_path} was written with other settings {state['settings']}; "
                "pass the same settings or another --state"
            )
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        # Dropout draws from the global generator: restore it too, or a resumed run diverges.
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        step, seconds, losses = state["step"], state["seconds"], list(state["losses"])
        console.print(f"resuming at step {step} from {state_path}")

    def checkpoint_state() -> None:
        save_torch_atomically(
            {
                "settings": settings.__dict__,
                "net": net.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "step": step,
                "seconds": seconds,
                "losses": losses,
            },
            state_path,
        )

    columns = (
        TextColumn("[bold]training[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    running = torch.zeros((), device=device)
    bf16 = settings.precision == "bf16"
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=settings.steps, completed=step, loss="–")
        started = time.perf_counter()
        while step < settings.steps:
            # One optimisation step on a random batch of the training part.
            index = torch.randint(
                len(data), (settings.batch_size,), generator=generator, device=device
            )
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                loss = edm_loss(
                    net, data[index], generator, p_mean=settings.p_mean, p_std=settings.p_std
                )
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                beta = ema_beta(step, settings)
                for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - beta)
            running += loss.detach()
            step += 1
            if step % 100 == 0 or step == settings.steps:
                mean_loss = float(running) / (100 if step % 100 == 0 else step % 100)
                running.zero_()
                losses.append((step, mean_loss))
                progress.update(task, completed=step, loss=f"{mean_loss:.4f}")
            if step % save_every == 0 or step == settings.steps:
                seconds_now = seconds + time.perf_counter() - started
                seconds, started = seconds_now, time.perf_counter()
                checkpoint_state()
                # A plain line per save, so a log file (no live bar there) shows progress too.
                loss_text = f"{losses[-1][1]:.4f}" if losses else "–"
                progress.console.print(
                    f"step {step}/{settings.steps}  loss {loss_text}  "
                    f"{seconds / 60:.1f} min  saved {state_path}"
                )

    final_loss = losses[-1][1] if losses else float("nan")
    save_checkpoint(
        out,
        ema,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        metadata={
            "dataset": "MNIST test set, 10,000 images 28×28, training part",
            "split": {"seed": settings.seed, "held_out": settings.held_out},
            "training": {
                **settings.__dict__,
                "device": device.type,
                "seconds": round(seconds, 1),
                "final_loss": final_loss,
                "command": "python -m skiptune.demo.train",
            },
            "feature_net": "digit_features.pt",
            "reference": "mnist_reference.npz",
        },
    )
    console.print(
        f"wrote {out} after {step} steps in {seconds / 60:.1f} min, loss {final_loss:.4f}"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = TrainSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--p-mean", type=float, default=defaults.p_mean,
                        help="mean of log σ in the training noise distribution (EDM's P_mean)")
    parser.add_argument("--p-std", type=float, default=defaults.p_std,
                        help="spread of log σ in the training noise distribution (EDM's P_std)")
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="auto: bf16 where the device computes it natively, else fp32",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ASSETS / "demo_unet.pt")
    parser.add_argument("--state", type=Path, default=Path("runs/demo/train_state.pt"))
    parser.add_argument("--mnist", default=None, help="folder of the MNIST IDX files")
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = fastest_precision(device) if args.precision == "auto" else args.precision
    settings = TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        p_mean=args.p_mean,
        p_std=args.p_std,
        precision=precision,
    )
    train(
        settings,
        out=args.out,
        state_path=args.state,
        device=device,
        mnist_dir=args.mnist,
        save_every=args.save_every,
    )


if __name__ == "__main__":
    main()
