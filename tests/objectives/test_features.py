"""Feature extractors: the digit net, clean-fid's Inception (offline) and any TorchScript net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skiptune.data import to_model_images
from skiptune.errors import ConfigurationError
from skiptune.objectives import FeatureExtractor, load_feature_extractor
from skiptune.objectives._features import (
    INCEPTION_FILENAME,
    INCEPTION_URL,
    DigitFeatureExtractor,
    InceptionFeatureExtractor,
    InputSpec,
    TorchScriptFeatureExtractor,
    quantize_images,
)
from tests.objectives.conftest import as_images

# The stand-in networks are made with torch.jit, which torch ≥ 2.9 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

# --- The digit net --------------------------------------------------------------------------


def test_digits_see_28px_images_exactly_as_the_feature_net_was_trained(
    digits: DigitFeatureExtractor, mnist_digits: np.ndarray
) -> None:
    batch = mnist_digits[:64]
    expected = digits.net.features(to_model_images(batch)).double().detach().numpy()
    features = digits(as_images(batch))
    assert isinstance(digits, FeatureExtractor)
    assert features.dtype == np.float64 and features.shape == (64, digits.feature_dim)
    np.testing.assert_array_equal(features, expected)


def test_digits_quantise_generated_images_to_8_bits(digits: DigitFeatureExtractor) -> None:
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    on_grid = quantize_images(images).to(torch.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(digits(images), digits(on_grid))
    assert digits.identity.startswith("digits:") and len(digits.identity) == len("digits:") + 64


def test_digits_refuse_rgb_images(digits: DigitFeatureExtractor) -> None:
    with pytest.raises(ConfigurationError, match="1-channel images, got 3 channels"):
        digits(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ConfigurationError, match=r"float tensor \[N, C, H, W\]"):
        digits(torch.zeros(28, 28))


def test_load_feature_extractor_checks_the_models_images(demo_model) -> None:
    extractor = load_feature_extractor("digits", model=demo_model)
    assert extractor.feature_dim == 128


def test_unknown_extractor_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="choose digits, inception or the path"):
        load_feature_extractor("clip", device="cpu")


# --- Inception (offline) --------------------------------------------------------------------


class StandInLayers(nn.Module):
    """Takes Inception's normalised input [N, 3, 299, 299] to [N, 2048, 1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(16)
        self.project = nn.Conv2d(3, 2048, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.project(self.pool(x)))


class StandInInception(nn.Module):
    """The interface of clean-fid's inception-2015-12-05.pt: [0, 255] images → [N, 2048]."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = StandInLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers((x - 128.0) / 128.0).view(x.shape[0], 2048)


@pytest.fixture
def stand_in_inception(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / INCEPTION_FILENAME
    torch.jit.save(torch.jit.script(StandInInception().eval()), str(path))
    return path


def test_missing_inception_weights_name_the_file_and_its_url() -> None:
    if Path("/tmp", INCEPTION_FILENAME).exists():
        pytest.skip("clean-fid's weights are present in /tmp on this machine")
    with pytest.raises(ConfigurationError) as error:
        load_feature_extractor("inception", device="cpu")
    message = str(error.value)
    assert "\n" not in message
    assert INCEPTION_FILENAME in message and INCEPTION_URL in message
    assert "SKIPTUNE_INCEPTION_WEIGHTS" in message


def test_named_inception_weights_that_do_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKIPTUNE_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pt"))
    with pytest.raises(ConfigurationError, match=r"nowhere\.pt \(from \$SKIPTUNE_INCEPTION"):
        load_feature_extractor("inception", device="cpu")


def test_inception_stand_in_matches_clean_fids_own_pipeline(
    stand_in_inception: Path, mnist_digits: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleanfid.fid import get_model_features
    from cleanfid.inception_torchscript import InceptionV3W

    images = as_images(mnist_digits[:6])
    extractor = load_feature_extractor(
        "inception", device="cpu", inception_weights=stand_in_inception
    )
    assert isinstance(extractor, InceptionFeatureExtractor)
    features = extractor(images)
    assert features.shape == (6, 2048) and features.dtype == np.float64

    # clean-fid on the same images: a "generator" returning them as uint8 RGB [0, 255].
    rgb = quantize_images(images).expand(-1, 3, -1, -1)
    network = InceptionV3W(str(stand_in_inception.parent), download=False)
    expected = get_model_features(
        lambda z: rgb, network, mode="clean", z_dim=1, num_gen=6, batch_size=6,
        device=torch.device("cpu"), verbose=False,
    )
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)

    # The environment variable finds the same file.
    monkeypatch.setenv("SKIPTUNE_INCEPTION_WEIGHTS", str(stand_in_inception))
    again = load_feature_extractor("inception", device="cpu")
    assert again.identity == extractor.identity
    assert extractor.identity.startswith("inception-clean:")


# --- Any TorchScript network ----------------------------------------------------------------


class TinyDigitNet(nn.Module):
    """[N, 1, 32, 32] in [-1, 1] → [N, 16]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 8, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def save_tiny(path: Path, declaration: dict | None) -> nn.Module:
    torch.manual_seed(1)
    net = TinyDigitNet().eval()
    extra = {"skiptune.json": json.dumps(declaration)} if declaration else {}
    torch.jit.save(torch.jit.script(net), str(path), _extra_files=extra)
    return net


def test_torchscript_extractor_with_embedded_declaration(
    tmp_path: Path, mnist_digits: np.ndarray
) -> None:
    declaration = {"input_range": "-1,1", "resolution": 32, "channels": 1, "resize": "pad"}
    net = save_tiny(tmp_path / "tiny.pt", {**declaration, "name": "tiny"})
    extractor = load_feature_extractor(str(tmp_path / "tiny.pt"), device="cpu")
    assert isinstance(extractor, TorchScriptFeatureExtractor)
    assert extractor.name == "tiny" and extractor.feature_dim == 16
    batch = mnist_digits[:8]
    expected = net(to_model_images(batch)).double().detach().numpy()
    np.testing.assert_allclose(extractor(as_images(batch)), expected, rtol=1e-6, atol=1e-6)


def test_torchscript_sibling_json_overrides_and_changes_the_identity(tmp_path: Path) -> None:
    declaration = {"input_range": "-1,1", "resolution": 32, "channels": 1, "resize": "pad"}
    save_tiny(tmp_path / "tiny.pt", declaration)
    embedded = TorchScriptFeatureExtractor(tmp_path / "tiny.pt")
    (tmp_path / "tiny.json").write_text(json.dumps({**declaration, "resize": "bilinear"}))
    sibling = TorchScriptFeatureExtractor(tmp_path / "tiny.pt")
    assert sibling.spec.resize == "bilinear"
    assert sibling.identity != embedded.identity
    explicit = TorchScriptFeatureExtractor(
        tmp_path / "tiny.pt", spec=InputSpec(input_range="0,255", resolution=(32, 32), channels=1)
    )
    assert explicit.spec.input_range == "0,255"


def test_torchscript_without_declaration_says_how_to_declare(tmp_path: Path) -> None:
    save_tiny(tmp_path / "tiny.pt", None)
    with pytest.raises(ConfigurationError, match=r"does not declare its input; write .*tiny\.json"):
        load_feature_extractor(str(tmp_path / "tiny.pt"), device="cpu")
    (tmp_path / "tiny.json").write_text(json.dumps({"input_range": "0,9", "resolution": 32}))
    with pytest.raises(ConfigurationError, match="input_range must be one of"):
        load_feature_extractor(str(tmp_path / "tiny.pt"), device="cpu")


def test_grayscale_goes_to_a_three_channel_net_by_repetition(tmp_path: Path) -> None:
    class ChannelMeans(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    torch.jit.save(torch.jit.script(ChannelMeans()), str(tmp_path / "means.pt"))
    spec = InputSpec(input_range="0,255", resolution=16, channels=3, resize="bicubic")
    extractor = TorchScriptFeatureExtractor(tmp_path / "means.pt", spec=spec)
    features = extractor(torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28))
    assert features.shape == (2, 3)
    np.testing.assert_allclose(features[:, 0], features[:, 1])
    np.testing.assert_allclose(features[:, 0], features[:, 2])
