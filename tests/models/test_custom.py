"""The module:attr adapter protocol, on the tiny additive U-Net of tests/models/additive_unet.py."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiptune.errors import ConfigurationError
from skiptune.models import custom
from skiptune.models._base import TunableModel, fingerprint_state_dict
from skiptune.models.custom import CustomSkipSite, wrap_module
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.models import additive_unet

os.environ["HF_HUB_OFFLINE"] = "1"

SPEC = "tests.models.additive_unet:adapter"


@pytest.fixture
def load_model(monkeypatch: pytest.MonkeyPatch) -> Callable[..., TunableModel]:
    """skiptune's load_model; stands in for skiptune.models.native until that module exists."""
    if importlib.util.find_spec("skiptune.models.native") is None:
        monkeypatch.setitem(
            sys.modules, "skiptune.models.native", types.ModuleType("skiptune.models.native")
        )
    from skiptune.models._loading import load_model

    return load_model


@pytest.fixture
def model(load_model: Callable[..., TunableModel]) -> TunableModel:
    return load_model(SPEC, device="cpu")


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    y = torch.rand(4, 1, 8, 8, generator=generator) * 2 - 1
    sigma = torch.tensor([0.05, 0.5, 2.0, 20.0])
    x = y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=generator)
    return x, sigma


def hand_written_denoise(
    net: additive_unet.AdditiveUNet, x: torch.Tensor, sigma: torch.Tensor, factors: Sequence
) -> torch.Tensor:
    """The additive U-Net written out by hand, each skip times its factor where it is added."""
    f = [torch.as_tensor(v, dtype=x.dtype).reshape(-1, 1, 1, 1) for v in factors]
    sd = additive_unet.SIGMA_DATA
    s = sigma.view(-1, 1, 1, 1)
    c_in = 1 / (s**2 + sd**2).sqrt()
    c_noise = sigma.log() / 4
    h0 = net.stem(c_in * x) + net.embed(c_noise[:, None])[:, :, None, None]
    h1 = F.silu(net.enc1(h0))
    h2 = F.silu(net.enc2(h1))
    h = net.mid(h2)
    h = F.interpolate(net.dec2.conv(F.silu(h + f[0] * h2)), scale_factor=2.0)
    h = F.interpolate(net.dec1.conv(F.silu(h + f[1] * h1)), scale_factor=2.0)
    h = net.dec0.conv(F.silu(h + f[2] * h0))
    out = net.out(F.silu(h))
    return sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * out


def assert_no_hooks(model: TunableModel) -> None:
    for module in model.net.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks


def test_load_by_spec(model: TunableModel) -> None:
    assert model.family == "custom"
    assert model.source == SPEC
    assert model.image_shape == (1, 8, 8)
    assert (model.sigma_min, model.sigma_max, model.sigma_data) == (0.002, 80.0, 0.5)
    assert [site.name for site in model.skip_sites] == [
        "dec2.input1",
        "dec1.input1",
        "dec0.input1",
    ]
    assert [site.module for site in model.skip_sites] == [
        model.net.dec2,
        model.net.dec1,
        model.net.dec0,
    ]
    assert not model.net.training
    assert model.fingerprint == fingerprint_state_dict(model.net.state_dict())
    assert model.fingerprint == custom.load(SPEC).fingerprint  # the seeded weights are stable
    assert_no_hooks(model)  # the load-time probe removed its hooks


def test_untuned_denoise_matches_hand_written_forward(model, batch) -> None:
    x, sigma = batch
    expected = hand_written_denoise(model.net, x, sigma, [1.0, 1.0, 1.0])
    torch.testing.assert_close(model.denoise(x, sigma), expected, rtol=1e-6, atol=1e-6)


def test_identity_schedule_reproduces_untuned_output_bit_for_bit(model, batch) -> None:
    x, sigma = batch
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule.identity()):
        tuned = model.denoise(x, sigma)
    assert torch.equal(tuned, untuned)


def test_rho_below_one_changes_the_output(model, batch) -> None:
    x, sigma = batch
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule(rho_bottom=0.6)):
        tuned = model.denoise(x, sigma)
    assert not torch.allclose(tuned, untuned)


@pytest.mark.parametrize(
    "schedule",
    [
        TuningSchedule(rho_bottom=0.5),
        TuningSchedule(rho_bottom=0.0, rho_top=0.8),
        TuningSchedule(rho_bottom=0.7, rho_top=1.1, shape="cosine"),
        TuningSchedule(rho_bottom=0.3, shape="power", gamma=2.0),
    ],
)
def test_each_skip_is_scaled_by_its_factor_where_it_is_added(model, batch, schedule) -> None:
    x, sigma = batch
    factors = schedule.factors(model.num_skips)  # bottom → top
    expected = hand_written_denoise(model.net, x, sigma, factors)
    with skip_tuning(model, schedule):
        tuned = model.denoise(x, sigma)
    torch.testing.assert_close(tuned, expected, rtol=1e-6, atol=1e-6)


def test_per_sample_factors_equal_one_run_per_sample(model, batch) -> None:
    x, sigma = batch
    schedules = [
        TuningSchedule(rho_bottom=0.4),
        TuningSchedule.identity(),
        TuningSchedule(rho_bottom=0.8, rho_top=0.9),
        TuningSchedule(rho_bottom=0.0, shape="cosine"),
    ]
    table = torch.tensor([s.factors(model.num_skips) for s in schedules])
    assert table.shape == (4, 3)
    with skip_tuning(model, table):
        batched = model.denoise(x, sigma)
    for j, schedule in enumerate(schedules):
        with skip_tuning(model, schedule):
            alone = model.denoise(x[j : j + 1], sigma[j : j + 1])
        torch.testing.assert_close(batched[j : j + 1], alone, rtol=1e-6, atol=1e-6)
    expected = hand_written_denoise(model.net, x, sigma, [table[:, i] for i in range(3)])
    torch.testing.assert_close(batched, expected, rtol=1e-6, atol=1e-6)


def test_hooks_are_removed_on_exit_and_on_exception(model, batch) -> None:
    x, sigma = batch
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule(rho_bottom=0.2)):
        assert all(site.module._forward_pre_hooks for site in model.skip_sites)
    assert_no_hooks(model)
    assert torch.equal(model.denoise(x, sigma), untuned)

    with pytest.raises(RuntimeError, match="inside the body"):  # noqa: SIM117
        with skip_tuning(model, TuningSchedule(rho_bottom=0.2)):
            raise RuntimeError("inside the body")
    assert_no_hooks(model)
    assert torch.equal(model.denoise(x, sigma), untuned)


def test_wrap_module_for_a_net_already_in_hand(batch) -> None:
    net = additive_unet.AdditiveUNet()
    model = wrap_module(
        net,
        denoise=additive_unet.edm_denoise,
        skip_sites=[("dec2", 1), ("dec1", 1), CustomSkipSite("dec0", 1, name="top")],
        image_shape=(1, 8, 8),
        sigma_min=0.01,
        sigma_max=10.0,
    )
    assert model.family == "custom"
    assert [site.name for site in model.skip_sites] == ["dec2.input1", "dec1.input1", "top"]
    x, sigma = batch
    with skip_tuning(model, TuningSchedule(rho_bottom=0.5)):
        tuned = model.denoise(x, sigma)
    expected = hand_written_denoise(net, x, sigma, TuningSchedule(rho_bottom=0.5).factors(3))
    torch.testing.assert_close(tuned, expected, rtol=1e-6, atol=1e-6)


def test_is_adapter_spec(tmp_path: Path) -> None:
    assert custom.is_adapter_spec("my_unets:adapter")
    assert custom.is_adapter_spec("pkg.sub.mod:Factory.make")
    assert not custom.is_adapter_spec("ckpt.pt")
    assert not custom.is_adapter_spec("runs/ckpt.pt")
    assert not custom.is_adapter_spec("my_unets:")
    assert not custom.is_adapter_spec("my-unets:adapter")
    existing = tmp_path / "mod:attr"
    existing.touch()
    assert not custom.is_adapter_spec(str(existing))


# --- bad adapters: one clear ConfigurationError each -------------------------------------


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


BAD_SITE_ADAPTER = """
    from tests.models import additive_unet
    from skiptune.models.custom import CustomModel


    def adapter():
        good = additive_unet.adapter()
        return CustomModel(
            net=good.net,
            denoise=good.denoise,
            skip_sites={sites},
            image_shape=good.image_shape,
            sigma_min={sigma_min},
            sigma_max=good.sigma_max,
        )
"""


def bad_site_module(tmp_path, monkeypatch, name, sites, sigma_min=0.002) -> str:
    body = BAD_SITE_ADAPTER.format(sites=sites, sigma_min=sigma_min)
    return write_module(tmp_path, monkeypatch, name, body)


def test_missing_module(load_model) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"cannot import adapter 'no_such_mod_x:adapter'.*"
        r"No module named 'no_such_mod_x'.*PYTHONPATH",
    ):
        load_model("no_such_mod_x:adapter", device="cpu")


def test_module_that_fails_on_import(tmp_path, monkeypatch) -> None:
    name = write_module(tmp_path, monkeypatch, "broken_unets", "raise ImportError('no torch_x')\n")
    with pytest.raises(ConfigurationError, match=r"cannot import adapter.*no torch_x.*PYTHONPATH"):
        custom.load(f"{name}:adapter")


def test_missing_attribute(load_model) -> None:
    with pytest.raises(ConfigurationError, match=r"has no attribute 'adaptor'.*fix the name"):
        load_model("tests.models.additive_unet:adaptor", device="cpu")


def test_attribute_that_is_not_an_adapter() -> None:
    with pytest.raises(ConfigurationError, match="is a float; it must be a CustomModel"):
        custom.load("tests.models.additive_unet:SIGMA_DATA")
    with pytest.raises(ConfigurationError, match=r"returned AdditiveUNet; return .*CustomModel"):
        custom.load("tests.models.additive_unet:AdditiveUNet")


def test_adapter_that_raises(tmp_path, monkeypatch) -> None:
    name = write_module(
        tmp_path, monkeypatch, "raising_unets", "def adapter():\n    raise OSError('no ckpt')\n"
    )
    with pytest.raises(ConfigurationError, match="raised OSError: no ckpt; fix the adapter"):
        custom.load(f"{name}:adapter")


def test_site_with_a_module_path_the_net_lacks(tmp_path, monkeypatch) -> None:
    name = bad_site_module(tmp_path, monkeypatch, "typo_unets", "[('dec2', 1), ('decoder1', 1)]")
    with pytest.raises(ConfigurationError, match=r"site 1 .*no submodule 'decoder1'"):
        custom.load(f"{name}:adapter")


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        ("[]", "skip_sites is empty"),
        ("[('dec2', -1)]", "input_index must be an int ≥ 0"),
        ("[('dec2', None, 0)]", "tuple_index needs an input_index"),
        ("[('dec2', 1), ('dec2', 1)]", "skip sites 0 and 1 are both dec2.input1"),
        ("[('dec2', 5)]", "only 2 positional inputs"),
        ("[('dec2', 1, 0)]", "input 1 is not a tuple"),
        ("[('dec2', 0), ('dec1.upsample', 1)]", "no submodule 'dec1.upsample'"),
        ("['dec2']", "must be a CustomSkipSite"),
    ],
)
def test_bad_site_indexes(tmp_path, monkeypatch, sites, message) -> None:
    name = bad_site_module(tmp_path, monkeypatch, f"bad_sites_{abs(hash(sites))}", sites)
    with pytest.raises(ConfigurationError, match=message):
        custom.load(f"{name}:adapter")


def test_bad_sigma_range(tmp_path, monkeypatch) -> None:
    name = bad_site_module(tmp_path, monkeypatch, "bad_sigma", "[('dec2', 1)]", sigma_min=100.0)
    with pytest.raises(ConfigurationError, match="0 < sigma_min < sigma_max"):
        custom.load(f"{name}:adapter")


def test_site_never_reached_by_the_forward_pass(batch) -> None:
    net = additive_unet.AdditiveUNet()
    net.unused = nn.Identity()
    with pytest.raises(ConfigurationError, match=r"site 1 \(unused.input0\) is never called"):
        wrap_module(
            net,
            denoise=additive_unet.edm_denoise,
            skip_sites=[("dec2", 1), ("unused", 0)],
            image_shape=(1, 8, 8),
            sigma_min=0.01,
            sigma_max=10.0,
        )
    assert not net.dec2._forward_pre_hooks and not net.unused._forward_pre_hooks


def test_wrong_image_shape() -> None:
    with pytest.raises(ConfigurationError, match=r"image_shape must be"):
        wrap_module(
            additive_unet.AdditiveUNet(),
            denoise=additive_unet.edm_denoise,
            skip_sites=[("dec2", 1)],
            image_shape=(8, 8),  # type: ignore[arg-type]
            sigma_min=0.01,
            sigma_max=10.0,
        )


@pytest.mark.parametrize("shape", [(1, 2**20, 2**20), (3, 8192, 8192), (2**27, 1, 1)])
def test_an_image_shape_too_large_to_sample_is_refused_before_any_allocation(
    shape: tuple[int, int, int],
) -> None:
    # (1, 2**20, 2**20) would be 4 TB of float32 noise for one image: one line, nothing made.
    with pytest.raises(ConfigurationError, match=r"values per image, more than skiptune") as info:
        wrap_module(additive_unet.AdditiveUNet(), denoise=additive_unet.edm_denoise,
                    skip_sites=[("dec2", 1)], image_shape=shape, sigma_min=0.01, sigma_max=10.0)
    assert "\n" not in str(info.value)


def test_the_largest_image_shape_skiptune_samples_is_accepted_by_the_check() -> None:
    from skiptune.models.custom import MAX_IMAGE_VALUES, _check_image_shape

    assert _check_image_shape((4, 4096, 4096)) == (4, 4096, 4096)
    assert MAX_IMAGE_VALUES == 4 * 4096 * 4096
