"""The shipped digit feature net: safe loading, stated accuracy, and refusal of bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from skiptune.data import load_mnist, split_indices, to_model_images
from skiptune.demo.train_features import augment, evaluate_accuracy, main
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.objectives import (
    DEFAULT_FEATURE_NET_PATH,
    DigitFeatureNet,
    FeatureNetConfig,
    save_feature_net,
)
from skiptune.objectives._digit_net import (
    FEATURE_NET_KIND,
    feature_net_fingerprint,
    load_feature_net,
)


class _CreatesFile:
    """Unpickling this would create ``path``: the stand-in for a checkpoint carrying code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


@pytest.fixture(scope="module")
def shipped() -> DigitFeatureNet:
    return load_feature_net()


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist()
    _, held_idx = split_indices(len(images), held_out=2000, seed=0)
    return to_model_images(images[held_idx]), torch.from_numpy(labels[held_idx].astype(np.int64))


def test_shipped_asset_is_plain_weights() -> None:
    checkpoint = torch.load(DEFAULT_FEATURE_NET_PATH, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"format_version", "kind", "config", "state_dict", "metadata"}
    assert checkpoint["kind"] == FEATURE_NET_KIND
    assert checkpoint["metadata"]["split"] == {"seed": 0, "held_out": 2000}
    assert DEFAULT_FEATURE_NET_PATH.stat().st_size < 1_000_000


def test_shipped_net_reaches_its_stated_accuracy(
    shipped: DigitFeatureNet, held_out: tuple[torch.Tensor, torch.Tensor]
) -> None:
    assert not shipped.training
    accuracy = evaluate_accuracy(shipped, *held_out)
    assert accuracy >= 0.98
    assert accuracy == pytest.approx(shipped.metadata["accuracy"], abs=1.5 / 2000)


def test_shipped_features_have_the_declared_dimension(
    shipped: DigitFeatureNet, held_out: tuple[torch.Tensor, torch.Tensor]
) -> None:
    with torch.no_grad():
        features = shipped.features(held_out[0][:16])
    assert features.shape == (16, shipped.config.feature_dim)
    assert shipped.config.feature_dim <= 256
    assert torch.isfinite(features).all()


def test_shipped_fingerprint_matches_its_metadata(shipped: DigitFeatureNet) -> None:
    assert feature_net_fingerprint(shipped) == shipped.metadata["fingerprint"]
    assert len(shipped.metadata["fingerprint"]) == 64


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = DigitFeatureNet(FeatureNetConfig(channels=(8, 16), feature_dim=32)).eval()
    path = save_feature_net(
        tmp_path / "net.pt", net, accuracy=0.5, split={"seed": 3, "held_out": 10}
    )
    loaded = load_feature_net(path)
    assert loaded.config == net.config
    assert feature_net_fingerprint(loaded) == feature_net_fingerprint(net)
    assert loaded.metadata["split"] == {"seed": 3, "held_out": 10}
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
        assert loaded.features(x).shape == (4, 32)


def test_metadata_that_weights_only_loading_would_refuse_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"metadata\.torch is a TorchVersion"):
        save_feature_net(
            tmp_path / "net.pt",
            DigitFeatureNet(),
            accuracy=0.5,
            split={"seed": 0, "held_out": 1},
            metadata={"torch": torch.__version__},
        )
    assert not list(tmp_path.iterdir())


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist; run python -m"):
        load_feature_net(tmp_path / "absent.pt")


def test_corrupt_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pt cannot be loaded safely"):
        load_feature_net(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(DEFAULT_FEATURE_NET_PATH.read_bytes()[:20000])
    with pytest.raises(CheckpointError, match=r"truncated\.pt cannot be loaded safely"):
        load_feature_net(truncated)


def test_other_weights_are_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": DigitFeatureNet().state_dict()}, path)
    with pytest.raises(CheckpointError, match="not a skiptune digit feature net"):
        load_feature_net(path)


def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error(tmp_path: Path) -> None:
    path = save_feature_net(
        tmp_path / "net.pt", DigitFeatureNet(), accuracy=0.5, split={"seed": 0, "held_out": 1}
    )
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["feature_dim"] = 64
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="do not fit its config"):
        load_feature_net(path)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_carrying_code_is_refused_unrun(tmp_path: Path, writer: str) -> None:
    created = tmp_path / "created-by-unpickling"
    payload = {"kind": FEATURE_NET_KIND, "format_version": 1, "payload": _CreatesFile(created)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as file:
            pickle.dump(payload, file, protocol=2)
    with pytest.raises(CheckpointError, match=r"evil\.pt cannot be loaded safely"):
        load_feature_net(path)
    assert not created.exists()


def test_the_code_carrying_payload_is_live(tmp_path: Path) -> None:
    """Control for the test above: unpickled unsafely, the payload does create its file."""
    created = tmp_path / "created-by-unpickling"
    pickle.loads(pickle.dumps(_CreatesFile(created))).close()
    assert created.exists()


def test_augment_keeps_range_and_is_identity_when_disabled(
    held_out: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images = held_out[0][:32]
    generator = torch.Generator().manual_seed(0)
    moved = augment(images, generator)
    assert moved.shape == images.shape
    assert moved.min() >= -1.0 and moved.max() <= 1.0
    assert not torch.equal(moved, images)
    still = augment(images, generator, max_shift=0.0, max_rotation=0.0, max_scale=0.0)
    torch.testing.assert_close(still, images, atol=1e-5, rtol=0)


def test_training_cli_reports_a_user_mistake_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net.pt"
    assert main(["--mnist-dir", str(tmp_path), "--out", str(out), "--epochs", "1"]) == 1
    printed = capsys.readouterr().out
    assert "error:" in printed and "is missing" in printed
    assert not out.exists()
