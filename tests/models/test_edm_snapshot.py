"""Reading EDM snapshots as data: nothing in the file runs, and bad files fail in one line."""

from __future__ import annotations

import copy
import json
import pathlib
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from skiptune.errors import CheckpointError
from skiptune.models import load_model
from skiptune.models.edm import UnsafeSnapshotError
from skiptune.models.edm._snapshot import KNOWN_NETWORK_SOURCES, TRUSTED_SOURCES_ENV, read_snapshot
from tests.models.edm_helpers import (
    FIXTURE_NAMES,
    _stand_in_persistence,
    fixture_path,
    read_tree,
    write_edm_pickle,
)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_snapshot_gives_class_kwargs_and_weights_without_edm_code(name: str) -> None:
    path = fixture_path(name)
    expected = json.loads(path.with_suffix(".json").read_text())
    snapshot = read_snapshot(path)
    assert snapshot.class_name == expected["precond"]
    assert snapshot.init_kwargs == expected["network_kwargs"]
    net = load_model(path, device="cpu").net
    assert sum(p.numel() for p in net.parameters()) == expected["params"]
    assert set(snapshot.state_dict) == set(net.state_dict())
    assert snapshot.source_sha256 in KNOWN_NETWORK_SOURCES
    assert not [m for m in sys.modules if m.split(".")[0] in ("torch_utils", "dnnlib")]


def _one_line(error: pytest.ExceptionInfo[BaseException], *phrases: str) -> str:
    text = str(error.value)
    assert "\n" not in text
    for phrase in phrases:
        assert phrase in text, text
    return text


def _records(tree: dict) -> list:
    """Every persistent record of the ``ema`` network, the network itself first."""
    found, pending = [], [tree["ema"]]
    while pending:
        record = pending.pop()
        if hasattr(record, "module_src"):
            found.append(record)
        pending.extend(m for m in (record.state.get("_modules") or {}).values()
                       if hasattr(m, "state"))
    return found


def _write_variant(tmp_path: Path, change: Any, name: str = "adm-edm-cond") -> Path:
    tree = read_tree(fixture_path(name))
    changed = change(tree)
    return write_edm_pickle(tmp_path / "variant.pkl", tree if changed is None else changed)


class _TouchesFile:
    """Unpickled for real, this creates ``path``: proof that code ran if the file exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.path,))


def test_payload_that_would_create_a_file_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"

    def smuggle(tree: dict) -> None:
        tree["ema"].state["sigma_data"] = _TouchesFile(marker)

    path = _write_variant(tmp_path, smuggle)
    # The payload is live: an ordinary unpickler (EDM's way, with its module present) runs it.
    with _stand_in_persistence() as reconstruct:
        reconstruct.__code__ = (lambda meta: meta).__code__
        pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UnsafeSnapshotError) as error:
        load_model(path, device="cpu")
    _one_line(error, "pathlib.Path.touch", "nothing was loaded")
    with pytest.raises(UnsafeSnapshotError):
        load_model(path, device="cpu", trust_pickle=True)      # trusting pickles changes nothing
    assert not marker.exists()
    assert not [m for m in sys.modules if m.split(".")[0] in ("torch_utils", "dnnlib")]


def test_network_source_that_would_create_a_file_is_refused_and_never_run(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "PWNED"
    source = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"

    def replace_source(tree: dict) -> None:
        tree["ema"].module_src = source

    path = _write_variant(tmp_path, replace_source)
    with pytest.raises(CheckpointError) as error:
        load_model(path, device="cpu")
    digest = read_tree(path)["ema"].source_sha256
    _one_line(error, digest, "not a released NVlabs/edm", TRUSTED_SOURCES_ENV)
    assert not marker.exists()


def test_vouching_for_a_source_hash_reads_it_and_still_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "PWNED"

    def replace_everywhere(tree: dict) -> None:
        for record in _records(tree):
            record.module_src = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"

    path = _write_variant(tmp_path, replace_everywhere)
    digest = read_tree(path)["ema"].source_sha256
    monkeypatch.setenv(TRUSTED_SOURCES_ENV, f"0000, {digest}")
    model = load_model(path, device="cpu")
    assert model.family == "edm" and model.num_skips == 9
    assert not marker.exists()


def test_truncated_snapshot(tmp_path: Path) -> None:
    data = fixture_path("ddpmpp-vp-cond").read_bytes()
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        load_model(path, device="cpu")
    _one_line(error, "truncated or damaged", str(path))


def test_pickle_of_something_else(tmp_path: Path) -> None:
    # It names EDM's persistence module (so it reads as a snapshot) but holds a list.
    path = write_edm_pickle(tmp_path / "other.pkl", ["torch_utils.persistence", 1, 2.0])
    with pytest.raises(CheckpointError) as error:
        load_model(path, device="cpu")
    _one_line(error, "holds a pickled list", "network-snapshot-*.pkl")


def test_pickle_without_any_edm_record_takes_the_ordinary_refusal(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"weights": _TouchesFile(tmp_path / "PWNED")}))
    with pytest.raises(CheckpointError) as error:
        load_model(path, device="cpu")
    _one_line(error, "contains pickled Python objects", "trust_pickle=True")
    assert not (tmp_path / "PWNED").exists()


def test_snapshot_without_ema(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda tree: {k: v for k, v in tree.items() if k != "ema"})
    with pytest.raises(CheckpointError) as error:
        load_model(path, device="cpu")
    _one_line(error, "has no 'ema' network", "loss_fn")


def test_unknown_network_class(tmp_path: Path) -> None:
    def rename(tree: dict) -> None:
        tree["ema"].class_name = "EDM2Precond"

    with pytest.raises(CheckpointError) as error:
        load_model(_write_variant(tmp_path, rename), device="cpu")
    _one_line(error, "'EDM2Precond' is not one skiptune implements", "VPPrecond")


def test_unknown_model_type(tmp_path: Path) -> None:
    def retype(tree: dict) -> None:
        tree["ema"].state["_init_kwargs"]["model_type"] = "UNet2DConditionModel"

    with pytest.raises(CheckpointError) as error:
        load_model(_write_variant(tmp_path, retype), device="cpu")
    _one_line(error, "'UNet2DConditionModel'", "SongUNet")


def test_state_dict_that_does_not_fit_the_recorded_kwargs(tmp_path: Path) -> None:
    def widen(tree: dict) -> None:
        tree["ema"].state["_init_kwargs"]["model_channels"] = 32

    with pytest.raises(CheckpointError) as error:
        load_model(_write_variant(tmp_path, widen), device="cpu")
    _one_line(error, "do not fit the network its kwargs describe", "missing, e.g. model.",
              "of another shape", "[64, 16] in the file, [128, 32] expected")


def test_kwargs_the_networks_do_not_take(tmp_path: Path) -> None:
    def extend(tree: dict) -> None:
        tree["ema"].state["_init_kwargs"]["use_flash_attention"] = True

    with pytest.raises(CheckpointError) as error:
        load_model(_write_variant(tmp_path, extend), device="cpu")
    _one_line(error, "records arguments", "use_flash_attention")


def test_disallowed_global_in_the_ignored_parts_is_refused_too(tmp_path: Path) -> None:
    def smuggle(tree: dict) -> dict:
        changed = copy.copy(tree)
        changed["dataset_kwargs"] = {"opener": _TouchesFile(tmp_path / "PWNED")}
        return changed

    with pytest.raises(UnsafeSnapshotError) as error:
        load_model(_write_variant(tmp_path, smuggle), device="cpu")
    _one_line(error, "pathlib.Path.touch")
    assert not (tmp_path / "PWNED").exists()


def test_snapshot_carrying_the_first_released_network_source_loads(tmp_path: Path) -> None:
    # EDM's first networks.py differs from the fixtures' only in Conv2d's fused-upsampling
    # padding (41 characters); snapshots written with it must load as well.
    later = "stride=2, padding=max(f_pad - w_pad, 0))\n            x = torch.nn.functional" \
        ".conv2d(x, w, padding=max(w_pad - f_pad, 0))"
    first = "stride=2, padding=w_pad+f_pad)\n            x = torch.nn.functional.conv2d(x, w)"

    def first_release(tree: dict) -> None:
        for record in _records(tree):
            assert record.module_src.count(later) == 1
            record.module_src = record.module_src.replace(later, first)

    path = _write_variant(tmp_path, first_release)
    snapshot = read_snapshot(path)
    assert "first released" in KNOWN_NETWORK_SOURCES[snapshot.source_sha256]
    assert load_model(path, device="cpu").fingerprint == load_model(
        fixture_path("adm-edm-cond"), device="cpu").fingerprint


def test_hand_made_records_of_the_wrong_shape(tmp_path: Path) -> None:
    def garble(tree: dict) -> None:
        tree["ema"].state["_modules"] = 5

    with pytest.raises(CheckpointError) as error:
        load_model(_write_variant(tmp_path, garble), device="cpu")
    _one_line(error, "is malformed", "network-snapshot-*.pkl")

