"""A FreeU + ρ search from the command line on a tiny Stable-Diffusion pipeline folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

os.environ["HF_HUB_OFFLINE"] = "1"

from skiptune import cli
from skiptune.sampling._images import MIN_GRID_WIDTH

pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from tests.models.tiny_sd import SDXL_UNET, add_text_encoders, save_embeddings, save_pipeline

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class ColourMoments(torch.nn.Module):
    """A fixed 9-d feature net: per-channel mean, spread and a gradient energy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        spread = x.std(dim=(2, 3))
        edges = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(2, 3))
        return torch.cat([mean, spread, edges], dim=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sd_cli")
    pipeline = save_pipeline(root / "tiny-sd")
    embeddings = save_embeddings(root / "prompts.safetensors", count=3)
    features = root / "moments.pt"
    declaration = {"input_range": "-1,1", "resolution": 16, "channels": 3, "name": "moments"}
    torch.jit.save(torch.jit.script(ColourMoments()), str(features),
                   _extra_files={"skiptune.json": json.dumps(declaration)})
    from PIL import Image

    reference = root / "reference"
    reference.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(24):
        pixels = (torch.rand(16, 16, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(reference / f"{i:02d}.png")
    return {"root": root, "pipeline": pipeline, "embeddings": embeddings,
            "features": features, "reference": reference}


def search_args(setup: dict[str, Path], *extra: str) -> list[str]:
    return [
        "search", "--model", str(setup["pipeline"]), "--nfe", "2", "--sampler", "euler",
        "--embeddings", str(setup["embeddings"]), "--ref", str(setup["reference"]),
        "--features", str(setup["features"]), "--rungs", "6", "--batch-size", "6",
        "--db", str(setup["root"] / "sd.db"), "--device", "cpu", "--space", "rho+freeu",
        "--optimizer", "random", "--json", *extra,
    ]


def text_search_args(
    setup: dict[str, Path], pipeline: Path, prompts: Path, db: Path, *extra: str
) -> list[str]:
    """:func:`search_args` on a pipeline with its own text encoder(s): --prompts, not
    --embeddings."""
    args = search_args(setup, *extra)
    args[args.index("--model") + 1] = str(pipeline)
    args[args.index("--db") + 1] = str(db)
    index = args.index("--embeddings")
    args[index : index + 2] = ["--prompts", str(prompts)]
    return args


def test_search_export_and_sample_on_a_pipeline_folder(setup: dict[str, Path]) -> None:
    result = runner.invoke(cli.app, search_args(setup, "--trials", "7", "--guidance-scale", "3"))
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.stdout)
    assert summary["finished"] == 7
    assert summary["baseline_value"] is not None
    # The paper's ρ and SD 1.x's FreeU defaults were measured beside ρ = 1.
    assert set(summary["known_values"]) == {"paper", "freeu"}
    assert set(summary["best_schedule"]["freeu"]) == {"b1", "b2", "s1", "s2"}

    exported = setup["root"] / "best.json"
    result = runner.invoke(cli.app, [
        "export", "--nfe", "2", "--db", str(setup["root"] / "sd.db"), "-o", str(exported),
        "--model", str(setup["pipeline"]),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(exported.read_text())
    best = summary["best_schedule"]
    freeu = best["freeu"]
    if freeu != {"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}:
        assert data["enable_freeu"] == {k: freeu[k] for k in ("s1", "s2", "b1", "b2")}
    assert next(iter(data["rho_factors"])) == "up_blocks.0.resnets.0"
    assert len(data["rho_factors"]) == 6
    assert data["rho_factors"]["up_blocks.0.resnets.0"] == pytest.approx(best["rho_bottom"])

    grid = setup["root"] / "grid.png"
    result = runner.invoke(cli.app, [
        "sample", "--model", str(setup["pipeline"]), "--from", str(exported), "-n", "3",
        "-o", str(grid), "--embeddings", str(setup["embeddings"]), "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    from PIL import Image

    side = 2 * 16 + 3 * 2                     # 2×2 grid of 16 px images, 2 px gaps
    scale = MIN_GRID_WIDTH // side + (MIN_GRID_WIDTH % side > 0)   # enlarged to be readable
    assert Image.open(grid).size == (side * scale, side * scale)


def test_resuming_with_another_guidance_scale_is_refused(setup: dict[str, Path]) -> None:
    first = runner.invoke(cli.app, search_args(setup, "--trials", "1", "--study", "g"))
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli.app, search_args(setup, "--trials", "2", "--study", "g",
                                                "--guidance-scale", "2"))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "guidance_scale" in line and "searched with other settings" in line


def test_no_prompts_is_one_line(setup: dict[str, Path]) -> None:
    args = search_args(setup, "--trials", "1", "--study", "none")
    index = args.index("--embeddings")
    del args[index : index + 2]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ") and "--prompts" in result.stderr
    assert "Traceback" not in result.output


def test_sample_with_freeu_values_and_no_export(setup: dict[str, Path]) -> None:
    import numpy as np

    written = {}
    for name, freeu in (("plain", []), ("freeu", ["--freeu", "1.5,1.6,0.9,0.2"])):
        target = setup["root"] / f"{name}.npz"
        result = runner.invoke(cli.app, [
            "sample", "--model", str(setup["pipeline"]), "--nfe", "2", "--sampler", "euler",
            "-n", "2", "-o", str(target), "--embeddings", str(setup["embeddings"]),
            "--device", "cpu", *(freeu or ["--rho-bottom", "1.0"]),
        ])
        assert result.exit_code == 0, result.output
        written[name] = np.load(target)["images"]
    assert written["plain"].shape == (2, 16, 16, 3)
    assert (written["plain"] != written["freeu"]).any()


def test_inception_is_the_default_feature_network_for_sd(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without --features an SD search measures with Inception; offline, a missing weights
    file is one line naming it."""
    monkeypatch.setenv("SKIPTUNE_INCEPTION_WEIGHTS", str(tmp_path / "absent.pt"))
    args = search_args(setup, "--trials", "1", "--study", "inception")
    index = args.index("--features")
    del args[index : index + 2]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "Inception-v3 weights" in line and "absent.pt" in line, line


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_search_with_text_prompts_runs_end_to_end(
    setup: dict[str, Path], kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--prompts runs the pipeline's own CLIP encoder(s) (transformers), then searches."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(tmp_path / "cache"))
    pipeline = add_text_encoders(
        save_pipeline(tmp_path / kind, *([SDXL_UNET] if kind == "sdxl" else []))
    )
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\ndog\n")
    args = text_search_args(setup, pipeline, prompts, tmp_path / "text.db", "--trials", "2",
                            "--study", f"text-{kind}", "--negative-prompt", "blurry")
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.stdout)
    assert summary["finished"] == 2 and summary["baseline_value"] is not None
    assert len(list((tmp_path / "cache" / "prompt_embeddings").glob("*.safetensors"))) == 2


def test_a_tokenizer_without_a_length_samples_and_searches(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 38, class 8: with no model_max_length in its tokenizer (transformers reports
    ~1e30), prompts are padded to the encoder's positions, in sample and skiptune-search."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(tmp_path / "cache"))
    pipeline = add_text_encoders(save_pipeline(tmp_path / "sd"), model_max_length=None)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\ndog\n")
    sampled = runner.invoke(cli.app, [
        "sample", "--model", str(pipeline), "--prompts", str(prompts), "-n", "2", "--nfe", "2",
        "--sampler", "euler", "-o", str(tmp_path / "x.npz"), "--device", "cpu"])
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "x.npz").is_file()
    args = text_search_args(setup, pipeline, prompts, tmp_path / "text.db", "--trials", "1",
                            "--study", "no-length")
    searched = runner.invoke(cli.search_app, args[1:])          # skiptune-search
    assert searched.exit_code == 0, searched.output
    assert json.loads(searched.stdout)[0]["finished"] == 1


def test_a_bfloat16_study_is_not_resumed_in_float32(setup: dict[str, Path]) -> None:
    first = runner.invoke(cli.app, search_args(setup, "--trials", "1", "--study", "dtype",
                                               "--dtype", "bfloat16"))
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli.app, search_args(setup, "--trials", "2", "--study", "dtype"))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "dtype" in line and "searched with other settings" in line
