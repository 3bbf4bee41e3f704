"""skiptune's own checkpoint family: the U-Net, its skip sites, save/load and safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from skiptune import CheckpointError, TuningSchedule, load_model, save_checkpoint, skip_tuning
from skiptune.models.native import build_net
from skiptune.models.unet import EDMUNet, UNetConfig

TINY = UNetConfig(
    img_resolution=8,
    in_channels=1,
    out_channels=1,
    model_channels=8,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(4,),
    dropout=0.0,
    num_groups=4,
    attn_heads_channels=8,
)


def _randomised_net(seed: int = 0):
    """A tiny net with every weight random (the zero-initialised output layers too)."""
    torch.manual_seed(seed)
    net = build_net("edm-unet", TINY.to_dict()).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.pt", _randomised_net(), sigma_min=0.002, sigma_max=80)


def _batch(n: int = 4, shape=(1, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.tensor([0.1, 1.0, 5.0, 40.0])[:n]


def test_cifar_config_is_edm_size_and_has_15_skips() -> None:
    with torch.device("meta"):
        unet = EDMUNet(UNetConfig())
    params = sum(p.numel() for p in unet.parameters())
    assert 55e6 < params < 56.5e6  # EDM reports 55.7 M for its CIFAR-10 DDPM++
    assert len(unet.skip_taps) == 15


def test_demo_model_loads_with_nine_skips(demo_model) -> None:
    assert demo_model.num_skips == 9
    assert demo_model.image_shape == (1, 28, 28)
    assert demo_model.family == "skiptune"
    assert len(demo_model.fingerprint) == 64


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    net = _randomised_net()
    path = save_checkpoint(tmp_path / "a.pt", net, sigma_min=0.002, sigma_max=80.0)
    model = load_model(path, device="cpu")
    x, sigma = _batch()
    assert torch.equal(model.denoise(x, sigma), net(x, sigma))
    again = load_model(save_checkpoint(tmp_path / "b.pt", model.net, sigma_min=0.002, sigma_max=80))
    assert again.fingerprint == model.fingerprint


def test_rho_one_is_bit_identical_and_other_rho_changes(demo_model) -> None:
    x, sigma = _batch(shape=demo_model.image_shape)
    plain = demo_model.denoise(x, sigma)
    with skip_tuning(demo_model, TuningSchedule.identity()):
        identity = demo_model.denoise(x, sigma)
    with skip_tuning(demo_model, TuningSchedule(0.6)):
        tuned = demo_model.denoise(x, sigma)
    assert torch.equal(plain, identity)
    assert (tuned - plain).abs().max() > 1e-3


def _hand_forward(unet: EDMUNet, x: torch.Tensor, noise_labels: torch.Tensor, factors: list[float]):
    """EDMUNet.forward written out, multiplying each skip where the decoder concatenates it."""
    emb = unet.map_noise(noise_labels)
    emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)
    emb = torch.nn.functional.silu(unet.map_layer0(emb))
    emb = torch.nn.functional.silu(unet.map_layer1(emb))
    skips = []
    for name, block in unet.enc.items():
        x = block(x) if name.endswith("_conv") else block(x, emb)
        skips.append(x)
    consumed = 0
    for name, block in unet.dec.items():
        if "_block" in name:
            x = torch.cat([x, factors[consumed] * skips.pop()], dim=1)
            consumed += 1
        x = block(x, emb)
    return unet.out_conv(torch.nn.functional.silu(unet.out_norm(x)))


def test_scaling_happens_where_the_decoder_consumes_the_skip(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, device="cpu")
    unet = model.net.unet
    schedule = TuningSchedule(0.3, 0.9, shape="power", gamma=2.0)
    factors = schedule.factors(model.num_skips)
    x, sigma = _batch()
    labels = sigma.log() / 4
    encoder_outputs: dict[str, list[torch.Tensor]] = {"plain": [], "tuned": []}

    def capture(key: str):
        return lambda _m, _a, out: encoder_outputs[key].append(out.clone())

    handle = unet.enc["8x8_block0"].register_forward_hook(capture("plain"))
    with torch.no_grad():
        unet(x, labels)
    handle.remove()
    handle = unet.enc["8x8_block0"].register_forward_hook(capture("tuned"))
    with torch.no_grad(), skip_tuning(model, schedule):
        tuned = unet(x, labels)
    handle.remove()
    with torch.no_grad():
        expected = _hand_forward(unet, x, labels, factors)
    torch.testing.assert_close(tuned, expected, rtol=0, atol=1e-6)
    # The encoder itself is untouched: its outputs are the same with and without tuning.
    assert torch.equal(encoder_outputs["plain"][0], encoder_outputs["tuned"][0])


def test_factor_zero_at_the_deepest_skip_only_changes_the_output(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, device="cpu")
    x, sigma = _batch()
    factors = torch.ones(model.num_skips)
    factors[0] = 0.0
    with skip_tuning(model, factors):
        dropped = model.denoise(x, sigma)
    assert not torch.equal(dropped, model.denoise(x, sigma))


def test_per_sample_schedules_equal_one_schedule_per_run(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, device="cpu")
    x, sigma = _batch()
    schedules = [TuningSchedule(0.5), TuningSchedule(1.0), TuningSchedule(0.7, 0.9),
                 TuningSchedule(1.2)]
    with skip_tuning(model, schedules):
        mixed = model.denoise(x, sigma)
    for j, schedule in enumerate(schedules):
        with skip_tuning(model, schedule):
            alone = model.denoise(x[j : j + 1], sigma[j : j + 1])
        torch.testing.assert_close(mixed[j : j + 1], alone, rtol=0, atol=1e-6)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.net.modules())


def test_hooks_are_removed_on_exit_and_on_exception(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, device="cpu")
    x, sigma = _batch()
    plain = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule(0.5)):
        assert _hook_count(model) == model.num_skips
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), skip_tuning(model, TuningSchedule(0.5)):
        raise RuntimeError("boom")
    assert _hook_count(model) == 0
    assert torch.equal(model.denoise(x, sigma), plain)


def test_wrong_factor_tensor_shape_is_a_clear_error(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, device="cpu")
    with pytest.raises(Exception, match="shape"), skip_tuning(model, torch.ones(3)):
        pass


# Bad files: each gives one clear CheckpointError and runs nothing.


def _one_line_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(path, device="cpu", **kwargs)
    assert "\n" not in str(info.value)


def test_missing_empty_truncated_and_foreign_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    _one_line_error(tmp_path / "nope.pt", "not found")
    (tmp_path / "empty.pt").write_bytes(b"")
    _one_line_error(tmp_path / "empty.pt", "empty")
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    _one_line_error(tmp_path / "cut.pt", "not a readable")
    (tmp_path / "notes.txt").write_text("hello, I am not a checkpoint\n")
    _one_line_error(tmp_path / "notes.txt", "not a readable")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    _one_line_error(tmp_path / "other.pt", "not a skiptune checkpoint")


def test_config_that_does_not_match_the_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["model_channels"] = 16
    torch.save(payload, tmp_path / "mismatch.pt")
    _one_line_error(tmp_path / "mismatch.pt", "do not match its config")


def test_nan_weights_and_newer_format(tmp_path: Path, tiny_checkpoint: Path) -> None:
    payload = torch.load(tiny_checkpoint, weights_only=True)
    next(iter(payload["ema"].values())).view(-1)[0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    _one_line_error(tmp_path / "nan.pt", "non-finite weights")
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    _one_line_error(tmp_path / "future.pt", "upgrade skiptune")


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_pickle_carrying_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    torch.save({"format": "skiptune-checkpoint", "evil": _Payload(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Payload(marker), f)
    _one_line_error(tmp_path / "evil.pt", "trust_pickle=True")
    _one_line_error(tmp_path / "evil.pkl", "trust_pickle=True")
    assert not marker.exists()


def test_trusted_pickle_of_a_skiptune_net_loads_only_when_asked(tmp_path: Path) -> None:
    net = _randomised_net()
    torch.save(net, tmp_path / "module.pt")
    _one_line_error(tmp_path / "module.pt", "trust_pickle=True")
    model = load_model(tmp_path / "module.pt", device="cpu", trust_pickle=True)
    x, sigma = _batch()
    assert torch.equal(model.denoise(x, sigma), net(x, sigma))
