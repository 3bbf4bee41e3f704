"""The classes of issue 38 this branch fixes, at their one root each, with new variants.

The writer rule (one function every writer calls), the URL masker (every message), the one
ASCII number and list parser (every list and spec option), a closed stdout, an export's σ
list, and the bounded reader for prompts, report artifacts and cache sidecars.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from skiptune._files import check_output_path, write_atomically
from skiptune.errors import FileAccessError
from tests.badinput.test_classes import _files, _one_error, _run
from tests.tuner.helpers import DEMO, cli_env, demo_database


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo database (a finished search at 3 and 5 NFE), for one module."""
    folder = tmp_path_factory.mktemp("issue38")
    copy = folder / "runs.db"
    demo = demo_database(tmp_path_factory.mktemp("demo38"))
    shutil.copyfile(demo, copy)
    shutil.copytree(demo.with_suffix(".artifacts"), folder / "runs.artifacts")  # its grids
    return copy


# -- 1. one writer rule ------------------------------------------------------------------------


def _sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("create table kept (x integer)")
    connection.close()
    return path


@pytest.mark.parametrize("name", ["notes.json", "data.png", "page.html", "plot.svg", "x.npz"])
def test_the_writer_rule_never_replaces_a_database_whatever_its_name(
    tmp_path: Path, name: str
) -> None:
    target = _sqlite(tmp_path / name)
    before = target.read_bytes()
    with pytest.raises(FileAccessError, match="it already holds a SQLite database"):
        write_atomically(target, b"{}", writes=".json")
    with pytest.raises(FileAccessError, match="SQLite database"):
        check_output_path(target)
    assert target.read_bytes() == before


def test_the_writer_rule_replaces_only_what_skiptune_wrote_in_that_format(tmp_path: Path) -> None:
    export = tmp_path / "rho.json"
    export.write_text('{\n  "format": "skiptune-schedule",\n  "nfe": 9\n}\n')
    write_atomically(export, b'{"format": "skiptune-schedule"}\n', writes=".json")  # its own
    empty = tmp_path / "empty.json"
    empty.touch()
    write_atomically(empty, b"{}", writes=".json")                           # empty: nothing lost
    config = tmp_path / "config.json"
    config.write_text('{"sample_size": 32}')                  # a model's config: not an export
    text = tmp_path / "rho.txt"
    text.write_text("my notes\n")
    for foreign in (config, text):
        with pytest.raises(FileAccessError, match="delete the file first if it is not needed"):
            write_atomically(foreign, b"{}", writes=".json")
    assert config.read_text() == '{"sample_size": 32}' and text.read_text() == "my notes\n"


def test_the_writer_rule_never_replaces_an_input_of_the_command(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html><head><title>skiptune report</title>")
    check_output_path(page)                                          # a report it wrote: fine
    with pytest.raises(FileAccessError, match="it is an input of this command"):
        check_output_path(page, reading=[str(tmp_path / "." / "page.html")])


def test_export_refuses_its_database_a_checkpoint_and_a_text_and_leaves_them(
    finished: Path, tmp_path: Path
) -> None:
    shutil.copyfile(DEMO, tmp_path / "model.pt")
    (tmp_path / "other.db").write_bytes(finished.read_bytes())
    (tmp_path / "README").write_text("keep me\n")
    before = _files(tmp_path)
    for output, phrase in ((str(finished), "input of this command"),
                           ("other.db", "SQLite database"), ("model.pt", "model checkpoint"),
                           ("README", "did not write")):
        result = _run("export", "--db", str(finished), "--nfe", "3", "-o", output, cwd=tmp_path)
        _one_error(result, phrase)
    assert _files(tmp_path) == before
    sqlite3.connect(finished).execute("select count(*) from studies").fetchone()


def test_export_to_dash_writes_the_file_text_to_stdout_and_no_file(
    finished: Path, tmp_path: Path
) -> None:
    result = _run("export", "--db", str(finished), "--nfe", "3", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "skiptune-schedule" and data["nfe"] == 3
    assert "wrote stdout" in result.stderr
    assert list(tmp_path.iterdir()) == []
    written = _run("export", "--db", str(finished), "--nfe", "3", "-o", "rho.json", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "rho.json").read_text() == result.stdout           # one format, two sinks


# -- 2. one URL masker for every message ------------------------------------------------------

SECRET = "hunter2SECRET"


@pytest.mark.parametrize("text", [
    f"cannot reach http://me:{SECRET}@127.0.0.1:9/x.pt (refused)",
    f"adapter: could not connect to postgresql://u:{SECRET}@h/db: timeout",
    f"model 'https://host/x.pt?token={SECRET}&raw=1' is gone",
    f"see huggingface.co/x?download=1&access_token={SECRET}",
    f"blob.core.windows.net/c/x.npz?sv=2020&sig={SECRET}",
    f"https://s3/x?X-Amz-Signature={SECRET}&X-Amz-Date=1",
    f"https://h/x?API_KEY={SECRET}",
])
def test_every_error_message_masks_url_secrets(text: str) -> None:
    from skiptune._secrets import mask_secrets
    from skiptune.errors import DownloadError, ModelError

    assert SECRET not in mask_secrets(text) and "***" in mask_secrets(text)
    for kind in (ModelError, DownloadError):       # the one base masks what it is given
        assert SECRET not in str(kind(text))


def test_a_message_without_secrets_is_unchanged() -> None:
    from skiptune._secrets import mask_secrets

    for text in ("pass allow_other_weights=True", "http://127.0.0.1:9/x.pt#sha256=ab",
                 "https://h/x?revision=main&subfolder=unet", "user@example.org wrote it"):
        assert mask_secrets(text) == text


def test_the_command_line_masks_url_secrets_in_every_line(tmp_path: Path) -> None:
    model = f"http://me:{SECRET}@127.0.0.1:9/model.pt"
    result = _run("sample", "--model", model, "-o", "x.png", "--offline", cwd=tmp_path)
    assert "me:***@127.0.0.1" in _one_error(result) and SECRET not in result.stderr
    ref = f"https://127.0.0.1:9/ref.npz?token={SECRET}#notapin"
    result = _run("search", "--model", str(DEMO), "--nfe", "3", "--ref", ref, "--db",
                  str(tmp_path / "s.db"), cwd=tmp_path)
    assert "token=***" in _one_error(result) and SECRET not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


# -- 16. one ASCII number and list parser ------------------------------------------------------


@pytest.mark.parametrize("spec", ["self:heun:9:٣٢", "self:heun:1_1", "self:heun:٩",
                                  "self:heun:9:３２", "self:heun:9:+32 "])
def test_a_self_reference_spec_takes_ascii_digits_only(spec: str) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.objectives._self_reference import parse_self_reference

    with pytest.raises(ConfigurationError, match="not a whole number"):
        parse_self_reference(spec)
    assert parse_self_reference("self:heun:9:32").num_samples == 32


@pytest.mark.parametrize(("flag", "value", "phrase"), [
    ("--class-labels", "1,,2", "item 2 is empty"),
    ("--class-labels", "1,", "item 2 is empty"),
    ("--class-labels", "٣", "not a whole number in ASCII digits"),
    ("--shapes", "", "it is empty"),
    ("--shapes", " , ", "item 1 is empty"),
    ("--shapes", "linear,,power", "item 2 is empty"),
    ("--rungs", "16,32,", "item 3 is empty"),
    ("--rungs", "1_6,32", "'1_6' is not a whole number"),
    ("--rho-bottom-range", "0.3,inf", "'inf' is not a decimal number"),
    ("--rho-bottom-range", "0.3,1_0", "'1_0' is not a decimal number"),
    ("--sigma-window", "٠.1,5", "is not a decimal number"),
])
def test_every_list_option_is_read_by_the_one_parser(flag: str, value: str, phrase: str) -> None:
    from tests.properties.test_cli_parsing_properties import invoke

    result, received = invoke("--nfe", "9", flag, value)
    assert result.exit_code == 2 and received == {}
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: invalid value for {flag}: expected") and phrase in line, line


def test_sample_reads_freeu_and_class_labels_with_the_one_parser(tmp_path: Path) -> None:
    for argv, phrase in ((("--freeu", "1.5,1.6,0.9,"), "--freeu"),
                         (("--class-labels", "1,,2"), "--class-labels")):
        result = _run("sample", "--model", str(DEMO), "--nfe", "3", "-n", "2", "-o", "x.png",
                      *argv, cwd=tmp_path)
        assert phrase in _one_error(result, "item 4 is empty" if phrase == "--freeu"
                                    else "item 2 is empty")
    assert list(tmp_path.iterdir()) == []


def test_a_search_refuses_a_self_spec_in_other_digits_and_creates_nothing(tmp_path: Path) -> None:
    for spec in ("self:heun:9:٣٢", "self:heun:1_1:64"):
        result = _run("search", "--model", str(DEMO), "--nfe", "3", "--ref", spec, cwd=tmp_path)
        _one_error(result, "not a whole number")
    assert list(tmp_path.iterdir()) == []


# -- 13. a closed stdout -----------------------------------------------------------------------


def _with_stdout_closed(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``skiptune ARGV >&-``: a fresh interpreter whose file descriptor 1 is closed."""
    return subprocess.run([sys.executable, "-m", "skiptune.cli", *argv], cwd=cwd, env=cli_env(),
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=240, preexec_fn=lambda: os.close(1))


def test_a_closed_stdout_is_one_line_and_changes_nothing(finished: Path, tmp_path: Path) -> None:
    before = _files(finished.parent)
    for argv in (["best"], ["best", "--json"], ["studies"], ["front"],
                 ["export", "--nfe", "3", "-o", "-"]):
        result = _with_stdout_closed([*argv, "--db", str(finished)], tmp_path)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: cannot write the output to stdout (stdout is closed)")
        assert "drop '>&-'" in line
    assert _files(finished.parent) == before and list(tmp_path.iterdir()) == []
    # A file the command opens never takes the closed descriptor: the export holds JSON alone.
    _with_stdout_closed(["export", "--nfe", "3", "-o", "rho.json", "--db", str(finished)],
                        tmp_path)
    assert json.loads((tmp_path / "rho.json").read_text())["nfe"] == 3
    assert _files(finished.parent) == before


# -- 17. an export's σ list fits its budget ----------------------------------------------------


def _export(tmp_path: Path, *, sampler: str, nfe: int, sigmas: list[float] | None) -> Path:
    from skiptune.exported import ExportedSchedule
    from skiptune.schedule import TuningSchedule

    exported = ExportedSchedule(
        schedule=TuningSchedule(rho_bottom=0.6), nfe=nfe, sampler=sampler, value=1.0,
        baseline_value=2.0, metric="fd", num_samples=16, seed=0, model_fingerprint="f" * 64,
        study="s", sigmas=sigmas,
    )
    path = tmp_path / f"{sampler}-{nfe}-{len(sigmas or [])}.json"
    path.write_text(exported.to_json())
    return path


def _descending(count: int) -> list[float]:
    return [*(80.0 / 2**k for k in range(count - 1)), 0.0]


@pytest.mark.parametrize(("sampler", "nfe", "steps"), [("heun", 9, 5), ("euler", 9, 9),
                                                       ("dpmpp_2m", 5, 5)])
def test_an_export_whose_sigmas_do_not_fit_its_budget_is_refused(
    tmp_path: Path, sampler: str, nfe: int, steps: int
) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.exported import load_exported

    assert load_exported(_export(tmp_path, sampler=sampler, nfe=nfe,
                                 sigmas=_descending(steps + 1))).nfe == nfe
    assert load_exported(_export(tmp_path, sampler=sampler, nfe=nfe, sigmas=None)).nfe == nfe
    for count in (2, steps, steps + 2, 40):
        path = _export(tmp_path, sampler=sampler, nfe=nfe, sigmas=_descending(count))
        with pytest.raises(ConfigurationError) as caught:
            load_exported(path)
        line = str(caught.value)
        assert f"'sigmas' with {count} values" in line and f"{steps + 1} values" in line, line
        assert "export it again" in line and "\n" not in line


def test_sample_refuses_such_an_export_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = _export(tmp_path, sampler="heun", nfe=3, sigmas=_descending(40))
    result = _run("sample", "--model", str(DEMO), "--from", path.name, "-n", "2", "-o", "x.png",
                  "--allow-other-weights", cwd=tmp_path)
    _one_error(result, "'sigmas' with 40 values", "heun at 3 NFE takes 2 steps")
    assert not (tmp_path / "x.png").exists()


# -- 4. the report reads its grid files through the bounded reader -----------------------------


def _spoil(grid: Path, how: int) -> None:
    """Replace a grid file by a link to /dev/zero, a sparse file past the cap, or a FIFO."""
    grid.unlink()
    if how == 0:
        grid.symlink_to("/dev/zero")
    elif how == 1:
        grid.touch()
        os.truncate(grid, 65 * 2**20)
    else:
        os.mkfifo(grid)


def test_a_report_skips_grid_files_that_are_not_bounded_regular_files(
    finished: Path, tmp_path: Path
) -> None:
    shutil.copyfile(finished, tmp_path / "runs.db")
    grids = tmp_path / "runs.artifacts"
    shutil.copytree(finished.parent / "runs.artifacts", grids)
    whole = _run("report", "--db", "runs.db", "-o", "whole.html", cwd=tmp_path)
    assert whole.returncode == 0 and "data:image/png" in (tmp_path / "whole.html").read_text()
    for number, grid in enumerate(sorted(grids.iterdir())):
        _spoil(grid, number % 3)
    result = _run("report", "--db", "runs.db", "-o", "page.html", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "page.html").read_text()
    assert "data:image/png" not in page and "no images stored" in page


def test_images_and_plots_replace_only_skiptunes_own(finished: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from skiptune.sampling import save_images
    from skiptune.tuner import plot_front

    photo = tmp_path / "photo.png"
    Image.new("RGB", (4, 4), "red").save(photo)
    statistics = tmp_path / "reference.npz"
    np.savez(statistics, mu=np.zeros(2), sigma=np.eye(2))
    before = _files(tmp_path)
    images = torch.zeros(2, 3, 8, 8)
    for target, phrase in ((photo, "a PNG image skiptune did not write"),
                           (statistics, "NumPy arrays of another kind")):
        with pytest.raises(FileAccessError, match=phrase):
            save_images(images, target)
    with pytest.raises(FileAccessError, match="a PNG image skiptune did not write"):
        plot_front(finished, photo)
    assert _files(tmp_path) == before
    for name in ("grid.png", "images.npz"):               # skiptune's own: replaced, again
        save_images(images, tmp_path / name)
        save_images(images, tmp_path / name)
    plot_front(finished, tmp_path / "grid.png")            # a PNG skiptune wrote
    plot_front(finished, tmp_path / "grid.png")
