"""Models by Hugging Face hub id, from a Hugging Face cache written by hand, offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported

from skiptune import cli
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models import load_model
from skiptune.models.hub import REACH_TIMEOUT_S, is_hub_id, reachable, weight_files
from tests.cli.test_sd_search import ColourMoments

pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from tests.models.tiny_sd import save_embeddings, save_pipeline

REVISION = "0123456789abcdef0123456789abcdef01234567"
UNET_ID, SD_ID = "tiny-org/tiny-unet", "tiny-org/tiny-sd"
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def _cache_repo(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as the Hugging Face cache holds a download of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import diffusers
    from PIL import Image

    root = tmp_path_factory.mktemp("hub")
    unet = root / "tiny-unet"                  # a bare UNet2DModel repository
    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8,
    ).save_pretrained(unet)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(unet)
    pipeline = save_pipeline(root / "tiny-sd")
    cache = root / "hf" / "hub"
    _cache_repo(cache, UNET_ID, unet)
    _cache_repo(cache, SD_ID, pipeline)
    features = root / "moments.pt"
    declaration = {"input_range": "-1,1", "resolution": 16, "channels": 3, "name": "moments"}
    torch.jit.save(torch.jit.script(ColourMoments()), str(features),
                   _extra_files={"skiptune.json": json.dumps(declaration)})
    reference = root / "reference"
    reference.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = (torch.rand(16, 16, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(reference / f"{i:02d}.png")
    return {"root": root, "unet": unet, "pipeline": pipeline, "hf_home": root / "hf",
            "embeddings": save_embeddings(root / "prompts.safetensors"),
            "features": features, "reference": reference}


@pytest.fixture
def hub_cache(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache for this process: huggingface_hub read HF_HOME when it was first imported."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(setup["hf_home"] / "hub"))
    return setup["hf_home"] / "hub"


def search_args(setup: dict[str, Path], model: str, *extra: str) -> list[str]:
    return [
        "--model", model, "--nfe", "2", "--sampler", "euler", "--trials", "2",
        "--ref", str(setup["reference"]), "--features", str(setup["features"]),
        "--rungs", "4", "--batch-size", "4", "--db", str(setup["root"] / "hub.db"),
        "--device", "cpu", "--optimizer", "random", "--no-validation", "--json", *extra,
    ]


def test_hub_ids_are_told_from_paths_and_adapters(tmp_path: Path) -> None:
    assert is_hub_id("google/ddpm-cifar10-32")
    assert is_hub_id("stabilityai/sd-turbo")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    assert not is_hub_id(str(tmp_path / "org" / "name"))        # an existing path
    for text in ("models/unet.pt", "a/b/c", "pkg.mod:attr", "org/na--me", "/org/name", "name"):
        assert not is_hub_id(text), text


def test_one_weights_file_per_folder_is_fetched() -> None:
    files = ["model_index.json", "unet/config.json",
             "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.bin",
             "vae/diffusion_pytorch_model.fp16.bin"]
    assert weight_files(files, None) == ["unet/diffusion_pytorch_model.safetensors",
                                         "vae/diffusion_pytorch_model.bin"]
    assert weight_files(files, "fp16") == ["unet/diffusion_pytorch_model.fp16.safetensors",
                                           "vae/diffusion_pytorch_model.fp16.bin"]


def test_a_unet_and_a_pipeline_by_id_are_the_weights_of_their_folders(
    setup: dict[str, Path], hub_cache: Path
) -> None:
    for repo_id, folder, family in ((UNET_ID, "unet", "diffusers"),
                                    (SD_ID, "pipeline", "diffusers-sd")):
        by_id = load_model(repo_id, device="cpu", revision="main")
        by_path = load_model(setup[folder], device="cpu")
        assert by_id.family == family
        assert by_id.source == repo_id
        assert by_id.fingerprint == by_path.fingerprint
        assert by_id.num_skips == by_path.num_skips


def test_an_id_missing_from_the_cache_offline_is_one_line(hub_cache: Path) -> None:
    with pytest.raises(CheckpointError) as raised:
        load_model("tiny-org/absent", device="cpu")
    line = str(raised.value)
    assert "\n" not in line
    assert "tiny-org/absent" in line and "not in the Hugging Face cache" in line
    assert re.search(r"downloads are off \(\$(SKIPTUNE|HF_HUB)_OFFLINE is set\)", line), line
    with pytest.raises(CheckpointError, match="revision 'v2' is not in the Hugging Face cache"):
        load_model(UNET_ID, device="cpu", revision="v2")


def test_the_offline_line_names_the_switch_the_user_gave(
    setup: dict[str, Path], hub_cache: Path
) -> None:
    result = runner.invoke(cli.app, ["sample", "--model", "tiny-org/absent", "--offline",
                                     "-o", str(setup["root"] / "absent.npz"), "--device", "cpu"])
    assert result.exit_code != 0
    assert "downloads are off (--offline was given)" in result.output, result.output


def test_revision_of_a_local_folder_is_refused(setup: dict[str, Path]) -> None:
    with pytest.raises(ConfigurationError, match=r"^revision applies to a Hugging Face hub id"):
        load_model(setup["unet"], device="cpu", revision="main")


def test_the_same_weights_by_path_and_by_id_are_one_study(
    setup: dict[str, Path], hub_cache: Path
) -> None:
    first = runner.invoke(cli.search_app, search_args(setup, str(setup["unet"])))
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli.search_app, search_args(setup, UNET_ID))
    assert again.exit_code == 0, again.output
    [by_path], [by_id] = json.loads(first.stdout), json.loads(again.stdout)
    assert by_id["study"] == by_path["study"]
    assert by_id["model_fingerprint"] == by_path["model_fingerprint"]
    assert by_id["finished"] == by_path["finished"] == 2      # met at its total: no new trial


def test_sd_pipeline_by_id_searches_and_samples(setup: dict[str, Path], hub_cache: Path) -> None:
    embeddings = ["--embeddings", str(setup["embeddings"])]
    result = runner.invoke(cli.search_app, search_args(setup, SD_ID, *embeddings))
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.stdout)
    assert summary["study"].startswith("skiptune-tiny-sd-")
    grid = setup["root"] / "sd.npz"
    result = runner.invoke(cli.app, ["sample", "--model", SD_ID, "--revision", "main", "--nfe",
                                     "2", "--sampler", "euler", "-n", "2", "-o", str(grid),
                                     "--device", "cpu", *embeddings])
    assert result.exit_code == 0, result.output
    assert grid.is_file()


def test_skiptune_search_by_id_runs_end_to_end_with_hf_home(setup: dict[str, Path]) -> None:
    """The installed command, in a fresh process that reads HF_HOME as users set it."""
    env = {**os.environ, "HF_HOME": str(setup["hf_home"]), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = search_args(setup, UNET_ID, "--study", "by-id-e2e")
    done = subprocess.run(
        [sys.executable, "-c", "from skiptune.cli import search_main; search_main()", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    [summary] = json.loads(done.stdout)
    assert summary["finished"] == 2 and summary["study"].startswith("skiptune-by-id-e2e-")


# No network: the endpoint is a closed local port, so nothing here can reach the real hub.
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The command's time, without the imports' (seconds of diffusers on a busy machine).
_TIMED_CLI = """
import os, time
import diffusers, skiptune.cli
start = time.monotonic()
try:
    skiptune.cli.main()
finally:
    with open(os.environ["ELAPSED_FILE"], "w") as file:
        file.write(str(time.monotonic() - start))
"""


def _sample_without_hub(setup: dict[str, Path], hf_home: Path, model: str,
                        ) -> tuple[subprocess.CompletedProcess[str], float]:
    """``skiptune sample --model MODEL`` in a fresh process whose hub endpoint refuses
    connections, with no offline switch set; the result and the command's time in seconds."""
    name = model.replace("/", "-")
    elapsed = setup["root"] / f"no-hub-{name}.seconds"
    env = {name: value for name, value in os.environ.items()
           if name not in ("HF_HUB_OFFLINE", "SKIPTUNE_OFFLINE")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]), ELAPSED_FILE=str(elapsed))
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_CLI, "sample", "--model", model, "--nfe", "2",
         "--sampler", "euler", "-n", "1", "-o", str(setup["root"] / f"no-hub-{name}.npz"),
         "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    return done, float(elapsed.read_text())


# huggingface_hub retries a refused connection for about 25 s before it gives up.
NO_HUB_S = 10.0


def test_an_unreachable_hub_is_one_line_within_seconds(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    done, elapsed = _sample_without_hub(setup, tmp_path / "empty-hf", "tiny-org/absent")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    [line] = lines
    assert "cannot be reached" in line and "tiny-org/absent" in line
    assert "HF_HUB_OFFLINE=1" in line and "--offline" in line and "local folder" in line
    assert str(tmp_path / "empty-hf" / "hub") in line               # the cache it looked in
    assert elapsed < NO_HUB_S, f"{elapsed:.1f} s"


def test_an_id_in_the_cache_loads_with_the_hub_unreachable(setup: dict[str, Path]) -> None:
    """As diffusers does: no network and no offline switch, the cache answers, quickly."""
    done, elapsed = _sample_without_hub(setup, setup["hf_home"], UNET_ID)
    assert done.returncode == 0, done.stderr
    assert (setup["root"] / "no-hub-tiny-org-tiny-unet.npz").is_file()
    assert elapsed < NO_HUB_S, f"{elapsed:.1f} s"


def test_reachable_tries_the_proxy_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = f"http://127.0.0.1:{server.getsockname()[1]}"
        closed = f"http://127.0.0.1:{_closed_port()}"
        start = time.monotonic()
        assert reachable(listening)
        assert not reachable(closed)
        monkeypatch.setenv("http_proxy", closed)          # the hub is only behind the proxy
        assert not reachable(listening)
        monkeypatch.setenv("http_proxy", listening)
        assert reachable(closed)
        assert time.monotonic() - start < REACH_TIMEOUT_S
