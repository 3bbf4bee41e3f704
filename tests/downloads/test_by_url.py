"""Models, Inception weights and references by URL, end to end, from a server on 127.0.0.1.

The server holds what a user fetches: the demo's skiptune checkpoint and its reference, an
EDM-format snapshot (the fixtures of ``$SKIPTUNE_EDM_FIXTURES``), a reference named like
EDM's fid-refs, and a stand-in for clean-fid's Inception TorchScript file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from skiptune import downloads
from skiptune.errors import OfflineError
from skiptune.models import load_model
from skiptune.objectives import load_feature_extractor
from skiptune.objectives._features import InceptionFeatureExtractor
from tests.downloads.server import FileServer, serving
from tests.models.edm_helpers import fixture_path
from tests.objectives.test_features import StandInInception
from tests.tuner.helpers import DEMO, REPO, cli_env, search_command

ASSETS = REPO / "skiptune" / "assets"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(folder))
    monkeypatch.delenv("SKIPTUNE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SKIPTUNE_INCEPTION_WEIGHTS", raising=False)
    return folder


@pytest.fixture
def server(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    files = tmp_path / "served"
    files.mkdir()
    shutil.copy(DEMO, files / "demo_unet.pt")
    shutil.copy(ASSETS / "mnist_reference.npz", files / "mnist_reference.npz")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(StandInInception().eval()),
                   str(files / "inception-2015-12-05.pt"))
    # Named like EDM's fid-refs: 2048-d statistics such as EDM publishes (mu and sigma only).
    np.savez(files / "cifar10-32x32.npz", mu=np.zeros(2048, np.float32),
             sigma=np.eye(2048, dtype=np.float32))
    with serving(files) as running:
        monkeypatch.setenv("SKIPTUNE_INCEPTION_URL", running.url("inception-2015-12-05.pt"))
        yield running


def _run(argv: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "SKIPTUNE_CACHE_DIR": str(cache)}
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def _sample_command(*args: str) -> list[str]:
    return [*search_command()[:2], "from skiptune.cli import main; main()", "sample", *args]


@pytest.mark.slow
def test_a_search_by_url_then_again_with_the_server_stopped_is_one_study(
    server: FileServer, cache: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    common = ["--nfe", "3", "--rungs", "8,16", "--no-validation", "--device", "cpu",
              "--db", str(db), "--json"]
    first = _run(search_command("--model", server.url("demo_unet.pt"), "--trials", "2",
                                "--ref", server.url("mnist_reference.npz"), *common), cache)
    assert first.returncode == 0, first.stderr
    [summary] = json.loads(first.stdout)
    assert summary["group"] == "demo_unet"               # as by path: the file's stem
    assert sorted(server.requests) == ["demo_unet.pt", "mnist_reference.npz"]
    server.stop()
    # No server: everything comes from the checked cache, offline.
    second = _run(search_command("--model", server.url("demo_unet.pt"), "--trials", "3",
                                 "--ref", server.url("mnist_reference.npz"), "--offline",
                                 *common), cache)
    assert second.returncode == 0, second.stderr
    [resumed] = json.loads(second.stdout)
    assert resumed["study"] == summary["study"] and resumed["finished"] == 3
    # The same weights by path are the same study, at its total already (the reference is
    # part of the objective's identity: the same URL, from the cache).
    by_path = _run(search_command("--model", str(DEMO), "--trials", "3", "--offline",
                                  "--ref", server.url("mnist_reference.npz"), *common), cache)
    assert by_path.returncode == 0, by_path.stderr
    [same] = json.loads(by_path.stdout)
    assert same["study"] == summary["study"] and same["finished"] == 3
    assert same["model_fingerprint"] == summary["model_fingerprint"]
    grid = tmp_path / "grid.png"
    sampled = _run(_sample_command("--model", server.url("demo_unet.pt"), "--nfe", "3", "-n",
                                   "4", "--device", "cpu", "-o", str(grid), "--offline"), cache)
    assert sampled.returncode == 0, sampled.stderr
    assert grid.stat().st_size > 0


def test_an_edm_snapshot_searched_and_sampled_by_url_with_inception_and_edm_refs(
    server: FileServer, cache: Path, tmp_path: Path
) -> None:
    shutil.copy(fixture_path("ddpmpp-edm-uncond"), server.folder / "network-snapshot.pkl")
    url = server.url("network-snapshot.pkl")
    searched = _run(search_command(
        "--model", url, "--nfe", "3", "--trials", "1", "--rungs", "8", "--no-validation",
        "--features", "inception", "--ref", server.url("cifar10-32x32.npz"), "--device",
        "cpu", "--db", str(tmp_path / "edm.db"), "--json",
    ), cache)
    assert searched.returncode == 0, searched.stderr
    [summary] = json.loads(searched.stdout)
    assert summary["group"] == "network-snapshot" and summary["finished"] == 1
    # The reference's note comes first; --trials 1 also says, before the run, that only the
    # baseline is measured.
    notes = [line for line in searched.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and "one of EDM's fid-refs" in notes[0], searched.stderr
    assert "measures only the baseline ρ = 1" in notes[1], searched.stderr
    assert "inception-2015-12-05.pt" in server.requests
    grid = tmp_path / "edm.png"
    sampled = _run(_sample_command("--model", url, "--nfe", "3", "-n", "2", "--device", "cpu",
                                   "-o", str(grid)), cache)
    assert sampled.returncode == 0, sampled.stderr
    assert server.requests.count("network-snapshot.pkl") == 1
    by_path = load_model(fixture_path("ddpmpp-edm-uncond"), device="cpu")
    assert load_model(url, device="cpu").fingerprint == by_path.fingerprint


def test_inception_is_fetched_once_and_checked(server: FileServer, cache: Path) -> None:
    extractor = load_feature_extractor("inception", device="cpu")
    assert isinstance(extractor, InceptionFeatureExtractor)
    assert extractor.path == downloads.entry_path(server.url("inception-2015-12-05.pt"))
    server.stop()
    again = load_feature_extractor("inception", device="cpu")
    assert again.identity == extractor.identity
    assert server.requests == ["inception-2015-12-05.pt"]


def test_cleanfid_statistics_are_fetched_from_a_mirror(
    server: FileServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skiptune.objectives import load_reference

    (server.folder / "cifar10_clean_train_32.npz").write_bytes(
        (server.folder / "cifar10-32x32.npz").read_bytes())
    monkeypatch.setenv("SKIPTUNE_CLEANFID_STATS_URL", server.url(""))
    statistics = load_reference("cleanfid:cifar10/train/32",
                                load_feature_extractor("inception", device="cpu"))
    assert statistics.feature_dim == 2048 and statistics.note is None
    assert "cifar10_clean_train_32.npz" in server.requests


def test_offline_refusals_name_the_file_its_url_and_where_to_put_it(
    server: FileServer, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.url("demo_unet.pt")
    result = _run(search_command("--model", url, "--nfe", "3", "--offline",
                                 "--db", str(tmp_path / "never.db")), cache)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: offline (--offline was given): model demo_unet.pt is not in skiptune's "
        f"cache; download {url} and put it at {downloads.entry_path(url)}, or run once "
        "without offline mode"
    )
    assert not (tmp_path / "never.db").exists() and server.requests == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as caught:
        load_feature_extractor("inception", device="cpu")
    inception = server.url("inception-2015-12-05.pt")
    assert f"download {inception} and put it at {downloads.entry_path(inception)}" in str(
        caught.value)
    assert "$SKIPTUNE_INCEPTION_WEIGHTS" in str(caught.value)


def test_a_pinned_model_url_whose_file_changed_is_refused_in_one_line(
    server: FileServer, cache: Path, tmp_path: Path
) -> None:
    pin = "0" * 64
    result = _run(search_command("--model", f"{server.url('demo_unet.pt')}#sha256={pin}",
                                 "--nfe", "3", "--db", str(tmp_path / "never.db")), cache)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot download model {server.url('demo_unet.pt')}: ")
    assert f"not the pinned {pin}" in line
    assert not (tmp_path / "never.db").exists()
    assert not downloads.entry_path(server.url("demo_unet.pt")).exists()
