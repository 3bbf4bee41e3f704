"""The demonstration model's training script: EDM loss, and resuming where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import skiptune.demo.train as training
from skiptune import load_model
from skiptune.demo.train import TrainSettings, train
from skiptune.errors import ConfigurationError

SETTINGS = TrainSettings(steps=4, batch_size=4, warmup_steps=2)


def _run(tmp: Path, name: str) -> Path:
    return train(
        SETTINGS,
        out=tmp / f"{name}.pt",
        state_path=tmp / f"{name}-state.pt",
        device=torch.device("cpu"),
        save_every=2,
    )


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    straight = load_model(_run(tmp_path, "straight"), device="cpu")

    calls = {"n": 0}
    real_loss = training.edm_loss

    def loss_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the state of step 2 was saved
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training, "edm_loss", loss_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed")
    assert not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(training, "edm_loss", real_loss)
    resumed = load_model(_run(tmp_path, "resumed"), device="cpu")

    assert resumed.fingerprint == straight.fingerprint
    assert resumed.metadata["training"]["steps"] == 4
    assert resumed.metadata["split"] == {"seed": 0, "held_out": 2000}


def test_edm_loss_is_smaller_for_the_trained_model(demo_model) -> None:
    from skiptune.data import load_mnist

    images, _ = load_mnist()
    batch = (torch.from_numpy(images[:64]).float() / 127.5 - 1).unsqueeze(1)
    untrained = training.build_net("edm-unet", training.DEMO_CONFIG.to_dict()).eval()
    losses = []
    for net in (untrained, demo_model.net):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            losses.append(float(training.edm_loss(net, batch, generator)))
    assert losses[1] < 0.5 * losses[0]


def test_an_unknown_precision_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigurationError, match="precision must be one of bf16, fp32"):
        TrainSettings(precision="fp8")


def test_the_ema_half_life_grows_with_the_images_seen_then_stops_at_its_cap() -> None:
    import math

    settings = TrainSettings(batch_size=128, ema_rampup_ratio=0.05, ema_halflife_images=100_000)

    def halflife_in_images(step: int) -> float:
        return settings.batch_size * math.log(0.5) / math.log(training.ema_beta(step, settings))

    assert halflife_in_images(999) == pytest.approx(0.05 * 1000 * 128)
    assert halflife_in_images(1999) == pytest.approx(2 * halflife_in_images(999))
    assert halflife_in_images(100_000) == pytest.approx(100_000)
    assert training.ema_beta(0, settings) < 1e-3  # the first step copies the weights


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it(
    tmp_path: Path, monkeypatch, native_bf16: bool, expected: str
) -> None:
    # On an AVX2-only CPU oneDNN reports no bf16, and autocast there is emulated: 10× slower.
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    out = tmp_path / "auto.pt"
    training.main(["--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out),
                   "--state", str(tmp_path / "state.pt")])
    assert load_model(out, device="cpu").metadata["training"]["precision"] == expected


def test_noise_distribution_flags_reach_the_run_and_its_metadata(tmp_path: Path) -> None:
    out = tmp_path / "wide.pt"
    training.main(["--steps", "2", "--batch-size", "2", "--device", "cpu", "--precision", "fp32",
                   "--p-mean", "-1.0", "--p-std", "1.4", "--out", str(out),
                   "--state", str(tmp_path / "state.pt")])
    recorded = load_model(out, device="cpu").metadata["training"]
    assert (recorded["p_mean"], recorded["p_std"]) == (-1.0, 1.4)
