"""Issue 38, class 3: a prompts file is read through the bounded reader, within stated limits
(count, prompt length, file size), and its prompts are encoded in batches.

A FIFO, ``/dev/zero`` or a link to it is refused before any byte is read (no hang, no
memory), and so is a file past the limits: one line each, through the library and the
command line. The tiny SD pipeline of the model tests carries real CLIP encoders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from skiptune.errors import SkiptuneError
from skiptune.models._prompts import (
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_PROMPTS_FILE_BYTES,
    read_prompts,
)
from tests.badinput.test_classes import _one_error, _run

transformers = pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from tests.models.tiny_sd import add_text_encoders, save_pipeline  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_text_encoders(save_pipeline(tmp_path_factory.mktemp("sd38")))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(folder))
    return folder


def _bad_prompt_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each way a prompts file can be unbounded, and a phrase of its one-line refusal."""
    fifo = folder / "fifo.txt"
    os.mkfifo(fifo)
    zero_link = folder / "zero.txt"
    zero_link.symlink_to("/dev/zero")
    many = folder / "many.txt"
    many.write_text("a cat\n" * (MAX_PROMPTS + 1))
    long = folder / "long.txt"
    long.write_text("short\n" + "x" * (MAX_PROMPT_CHARS + 1) + "\n")
    huge = folder / "huge.txt"
    huge.write_text(("a cat " * 200 + "\n") * (MAX_PROMPTS_FILE_BYTES // 1200 + 10))
    # The bounded cases first: before the fix, a device or a FIFO would hang the test, not fail it.
    return {
        "too many prompts": (many, f"{MAX_PROMPTS + 1:,} prompts"),
        "a prompt too long": (long, "prompt 2 of"),
        "a file too large": (huge, f"larger than the {MAX_PROMPTS_FILE_BYTES:,} bytes"),
        "a FIFO": (fifo, "not a regular file"),
        "/dev/zero": (Path("/dev/zero"), "not a regular file"),
        "a link to /dev/zero": (zero_link, "not a regular file"),
    }


def test_a_prompts_file_is_bounded_and_regular(tmp_path: Path) -> None:
    for name, (path, phrase) in _bad_prompt_files(tmp_path).items():
        with pytest.raises(SkiptuneError) as caught:
            read_prompts(path)
        line = str(caught.value)
        assert phrase in line and "\n" not in line, (name, line)
    good = tmp_path / "good.txt"
    good.write_text("a cat\n\n  a dog  \n" + "y" * MAX_PROMPT_CHARS + "\n")
    assert read_prompts(good) == ["a cat", "a dog", "y" * MAX_PROMPT_CHARS]


@pytest.mark.slow
def test_sample_refuses_an_unbounded_prompts_file_in_one_line(
    sd_folder: Path, tmp_path: Path
) -> None:
    cases = _bad_prompt_files(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for name in ("too many prompts", "a FIFO"):
        path, phrase = cases[name]
        result = _run("sample", "--model", str(sd_folder), "--prompts", str(path), "-n", "2",
                      "--nfe", "3", "-o", "x.npz", "--device", "cpu", cwd=tmp_path, timeout=120)
        _one_error(result, phrase)
    long_negative = "n" * (MAX_PROMPT_CHARS + 1)
    good = tmp_path / "good.txt"
    good.write_text("a cat\n")
    result = _run("sample", "--model", str(sd_folder), "--prompts", str(good),
                  "--negative-prompt", long_negative, "--guidance-scale", "3", "-n", "2",
                  "--nfe", "3", "-o", "x.npz", "--device", "cpu", cwd=tmp_path, timeout=120)
    _one_error(result, "the negative prompt is")
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "good.txt"])


def test_prompts_are_encoded_in_batches(
    sd_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skiptune.models import load_model

    batches: list[int] = []
    forward = transformers.CLIPTextModel.forward

    def recording(self: Any, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        batches.append(int(input_ids.shape[0]))
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(transformers.CLIPTextModel, "forward", recording)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {k}\n" for k in range(150)))
    model = load_model(sd_folder, device="cpu",
                       conditioning={"prompts": str(prompts), "guidance_scale": 1.0})
    assert model.conditioner.embeddings.count == 150
    assert sum(batches) == 150 and max(batches) <= 64, batches


def test_an_embeddings_file_must_be_a_regular_file(sd_folder: Path, tmp_path: Path) -> None:
    from skiptune.models import load_model

    fifo = tmp_path / "embeds.safetensors"
    os.mkfifo(fifo)
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    for path in (link, fifo):        # a FIFO would hang the loader before the fix
        with pytest.raises(SkiptuneError, match="not a regular file") as caught:
            load_model(sd_folder, device="cpu", conditioning={"embeddings": str(path)})
        assert "\n" not in str(caught.value)
