"""`search --ref self:…` end to end: the demo model, an EDM snapshot, a tiny SD pipeline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

os.environ["HF_HUB_OFFLINE"] = "1"

from skiptune import cli
from tests.cli.test_sd_search import ColourMoments
from tests.models.edm_helpers import fixture_path
from tests.models.test_edm import _PooledFeatures

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
DEMO = Path(__file__).resolve().parents[2] / "skiptune" / "assets" / "demo_unet.pt"
SMALL = "self:heun:7:64"


def _scripted(net: torch.nn.Module, path: Path, *, channels: int) -> Path:
    """A TorchScript feature net for 16×16 images, declared as skiptune reads it."""
    declaration = {"input_range": "-1,1", "resolution": 16, "channels": channels}
    torch.jit.save(torch.jit.script(net), str(path),
                   _extra_files={"skiptune.json": json.dumps(declaration)})
    return path


def _search(*args: str) -> dict:
    result = runner.invoke(cli.app, ["search", "--ref", SMALL, "--trials", "2", "--device",
                                     "cpu", "--optimizer", "random", "--json",
                                     "--validation-n", "8", *args])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["finished"] == 2
    assert summary["baseline_value"] is not None and np.isfinite(summary["baseline_value"])
    return {"summary": summary, "stderr": result.stderr}


def test_demo_model_searches_against_its_own_samples(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = _search("--model", str(DEMO), "--nfe", "3", "--rungs", "8", "--db", str(db))
    assert f"computing reference {SMALL} once: 64 samples" in first["stderr"]
    again = _search("--model", str(DEMO), "--nfe", "5", "--rungs", "8", "--db", str(db))
    assert "computing reference" not in again["stderr"]      # cached in the database


def test_bad_self_spec_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    result = runner.invoke(cli.app, ["search", "--model", str(DEMO), "--nfe", "3", "--ref",
                                     "self:heun:8", "--db", str(db), "--device", "cpu"])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "error: reference 'self:heun:8': heun cannot use exactly 8 NFE (it uses 2·steps − 1); "
        "the nearest budgets it can meet are 7 and 9"
    ]
    assert not db.exists()


def test_an_edm_snapshot_searches_against_its_own_samples(tmp_path: Path) -> None:
    model = shutil.copy(fixture_path("ddpmpp-edm-uncond"), tmp_path / "net.pkl")
    features = _scripted(_PooledFeatures(), tmp_path / "pooled.pt", channels=3)
    _search("--model", str(model), "--nfe", "3", "--sampler", "euler", "--rungs", "8",
            "--features", str(features), "--batch-size", "8", "--db", str(tmp_path / "edm.db"))


def test_a_stable_diffusion_pipeline_searches_against_its_own_samples(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from tests.models.tiny_sd import save_embeddings, save_pipeline

    pipeline = save_pipeline(tmp_path / "tiny-sd")
    embeddings = save_embeddings(tmp_path / "prompts.safetensors", count=3)
    features = _scripted(ColourMoments(), tmp_path / "moments.pt", channels=3)
    _search("--model", str(pipeline), "--nfe", "2", "--sampler", "euler", "--rungs", "6",
            "--embeddings", str(embeddings), "--guidance-scale", "3", "--features",
            str(features), "--batch-size", "6", "--db", str(tmp_path / "sd.db"))
