"""The bad-input corpus: each mistake a user can make, run through the real command line.

Every case is a process of its own running ``skiptune-search`` (or ``skiptune search``)
and must end with exactly one line on stderr, ``error: ...``, that names what was wrong
(``problem``) and what to do instead (``fix``); a non-zero exit (1 for a mistake the
library finds, 2 for one the argument parser finds); no traceback; nothing on stdout; and
every file in the case's own folder byte-for-byte as it was, none added or removed. That
folder holds the database the command is pointed at: a copy of one finished tiny search,
or the bad database the case is about.

Cases run two at a time, each forked from an interpreter that imported skiptune once.
Running out of memory and Ctrl-C end differently (the search goes on, or stops and leaves
a consistent database) and have their own tests at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from PIL import Image

from tests.forked import Command, run_command
from tests.tuner.helpers import DEMO, cli_env, default_ctrl_c, search_command

pytestmark = pytest.mark.slow

TINY = ("--rungs", "16,32", "--trials", "1")       # about a second per trial at 3 NFE
STUDY = "skiptune-demo_unet-heun-nfe3"
SECRET = "SECRETPW"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- the prepared inputs ---------------------------------------------------------------------


class _CreatesFile:
    """A pickle that, when unpickled, writes a file: proof that code ran if the file exists."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.write_text, (self.marker, "code ran"))


def _save_images(folder: Path, count: int, shape: tuple[int, ...], mode: str) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(folder / f"{i:04d}.png")


def _make_bad_inputs(root: Path) -> None:
    """Every bad file and folder the corpus points the command at."""
    payload = torch.load(DEMO, map_location="cpu", weights_only=True)
    (root / "empty.pt").write_bytes(b"")
    data = DEMO.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    (root / "notes.pt").write_text("hello, I am not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")
    config = dict(payload["config"], model_channels=2 * payload["config"]["model_channels"])
    torch.save({**payload, "config": config}, root / "mismatch.pt")
    ema = dict(payload["ema"])
    name = next(iter(ema))
    ema[name] = ema[name].clone()
    ema[name].view(-1)[0] = float("nan")
    torch.save({**payload, "ema": ema}, root / "nan.pt")

    marker = root / "PWNED"
    torch.save({"format": "skiptune-checkpoint", "payload": _CreatesFile(marker)},
               root / "evil.pt")
    with open(root / "evil.pkl", "wb") as handle:
        pickle.dump(_CreatesFile(marker), handle)
    # The payload is live: unpickled for real (here, in the test), it writes the marker.
    torch.load(root / "evil.pt", map_location="cpu", weights_only=False)
    assert marker.read_text() == "code ran"
    marker.unlink()

    unet = root / "diffusers_unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps(
        {"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1}))
    shim = root / "no_diffusers" / "diffusers"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named diffusers')\n")
    (root / "some_folder").mkdir()
    (root / "some_folder" / "README.txt").write_text("not a model\n")

    np.savez(root / "wrong_dim.npz", mu=np.zeros(10), sigma=np.eye(10))
    np.savez(root / "no_mu_sigma.npz", mean=np.zeros(128))
    np.savez(root / "pickled.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    (root / "empty_ref").mkdir()
    (root / "undecodable_ref").mkdir()
    (root / "undecodable_ref" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _save_images(root / "io_error_ref", 4, (28, 28), "L")
    # Reading /proc/self/mem at offset 0 fails with EIO for anyone, root included: a file
    # that cannot be read, as a failing disk or a broken network mount gives.
    (root / "io_error_ref" / "zzzz.png").symlink_to("/proc/self/mem")
    _save_images(root / "locked_ref", 4, (28, 28), "L")
    (root / "locked_ref").chmod(0)
    _save_images(root / "big_ref", 4, (64, 64), "L")
    _save_images(root / "rgb_ref", 4, (28, 28, 3), "RGB")

    (root / "not_a_db.db").write_text("this is a text file, not a database\n" * 20)


@dataclass(frozen=True)
class Finished:
    """The finished tiny search every case's database is a copy of."""

    path: Path
    baseline_value: float


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    _make_bad_inputs(root)
    yield root
    (root / "locked_ref").chmod(0o755)        # so that pytest can clean up


def _run(command: list[str], *, cwd: Path, pythonpath: Path | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env["SKIPTUNE_CACHE_DIR"] = str(cwd.parent / "cache")    # never the user's ~/.cache
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env["PYTHONPATH"]])
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Finished:
    folder = tmp_path_factory.mktemp("finished")
    path = folder / "skiptune.db"
    result = _run(search_command("--model", str(DEMO), "--nfe", "3", *TINY, "--device", "cpu",
                                 "--db", str(path), "--json"), cwd=folder)
    assert result.returncode == 0, result.stderr
    (summary,) = json.loads(result.stdout)
    assert summary["finished"] == 1
    newer = inputs / "newer.db"
    shutil.copy(path, newer)
    connection = sqlite3.connect(newer)
    try:
        with connection:
            connection.execute("UPDATE skiptune_schema_version SET version = 99, "
                               "skiptune_version = '9.9.9'")
    finally:
        connection.close()       # the last connection folds the WAL into the file itself
    assert not Path(f"{newer}-wal").exists()
    return Finished(path, float(summary["baseline_value"]))


# -- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad command: its arguments, the phrases its error line must hold, its exit code.

    ``argv`` may name ``{inputs}`` (the folder of bad files) and ``{demo}`` (the demo model).
    ``db`` is the database it is given: ``finished`` (a copy of the finished search),
    ``copy:NAME`` (a copy of that bad file), ``read-only`` (a copy of the finished search in
    a folder nobody may write), or anything else, passed as it is.
    """

    id: str
    argv: tuple[str, ...]
    problem: str
    fix: str
    code: int = 1
    db: str = "finished"
    group: bool = False                 # run `skiptune search`, not `skiptune-search`
    shim: str | None = None             # a folder of {inputs} put first on PYTHONPATH
    skip: str | None = None             # why the case cannot be made on this machine


def search(*extra: str, model: str | None = "{demo}", nfe: str | None = "3",
           device: str | None = "cpu") -> tuple[str, ...]:
    """The arguments of a tiny search with ``extra`` appended and any of the usual ones left out."""
    argv: list[str] = []
    for flag, value in (("--model", model), ("--nfe", nfe), ("--device", device)):
        if value is not None:
            argv += [flag, value]
    return (*argv, *TINY, *extra)


CASES = [
    # Model files.
    Case("missing-model", search(model="{inputs}/nowhere.pt"),
         "not found", "pass a skiptune .pt checkpoint"),
    Case("empty-model", search(model="{inputs}/empty.pt"),
         "is empty", "pass a skiptune .pt checkpoint"),
    Case("truncated-model", search(model="{inputs}/truncated.pt"),
         "truncated or damaged", "copy it again"),
    Case("text-file-as-model", search(model="{inputs}/notes.pt"),
         "neither a zip archive", "pass a skiptune .pt checkpoint", group=True),
    Case("torch-file-not-a-checkpoint", search(model="{inputs}/foreign.pt"),
         "not a skiptune checkpoint", "save_checkpoint"),
    Case("config-does-not-match-weights", search(model="{inputs}/mismatch.pt"),
         "weights do not match its config", "save it again"),
    Case("nan-weights", search(model="{inputs}/nan.pt"),
         "non-finite weights (NaN or inf)", "restore an earlier checkpoint"),
    Case("pickle-that-runs-code", search(model="{inputs}/evil.pt"),
         "contains pickled Python objects", "--trust-pickle"),
    Case("raw-pickle-that-runs-code", search(model="{inputs}/evil.pkl"),
         "contains pickled Python objects", "only if you trust where it came from"),
    Case("diffusers-folder-without-diffusers", search(model="{inputs}/diffusers_unet"),
         "diffusers is not installed", "pip install", shim="no_diffusers"),
    Case("folder-that-is-no-model", search(model="{inputs}/some_folder"),
         "is not a diffusers UNet2DModel folder", "pass a skiptune .pt checkpoint"),
    Case("empty-model-argument", search(model=""), "no model given", "pass --model"),
    Case("model-option-missing", search(model=None), "missing option '--model'", "--help",
         code=2),
    # Step budgets.
    Case("heun-8-nfe", search(nfe="8"), "heun cannot use exactly 8 NFE",
         "nearest budgets it can meet are 7 and 9"),
    Case("nfe-0", search(nfe="0"), "invalid value for '--nfe'",
         "greater than or equal to 1", code=2),
    Case("nfe-negative", search(nfe="-3"), "invalid value for '--nfe'",
         "greater than or equal to 1", code=2, group=True),
    Case("nfe-not-a-number", search(nfe="nine"), "invalid value for '--nfe'",
         "valid integer", code=2),
    Case("nfe-absurd", search(nfe="100000000001"), "more than skiptune samples with",
         "pass e.g. nfe=9"),
    Case("ddim-on-a-continuous-model", search("--sampler", "ddim"),
         "walks a discrete-time model's training timesteps", "choose one of"),
    # Skip factors.
    Case("rho-bounds-inverted", search("--rho-bottom-range", "1.2,0.3"), "got 1.2,0.3",
         "pass e.g. 0.3,1.2"),
    Case("rho-bounds-negative", search("--rho-bottom-range", "-0.5,0.3"), "0 ≤ low < high",
         "pass e.g. 0.3,1.2"),
    Case("rho-top-negative", search("--rho-top", "-1"), "invalid value for '--rho-top'",
         "greater than or equal to 0", code=2),
    Case("rho-range-one-number", search("--rho-top-range", "0.5"),
         "invalid value for --rho-top-range", "expected 2 numbers like 0.3,1.2", code=2),
    # Unknown names.
    Case("unknown-sampler", search("--sampler", "hune"), "unknown sampler 'hune'",
         "did you mean 'heun'"),
    Case("unknown-shape", search("--shapes", "linear,zigzag"), "'zigzag'",
         "pass e.g. linear,cosine"),
    Case("unknown-optimizer", search("--optimizer", "bayes"),
         "invalid value for '--optimizer'", "'tpe', 'gp', 'cmaes', 'random', 'qmc', 'grid'",
         code=2),
    Case("unknown-feature-network", search("--features", "alexnet"),
         "unknown feature extractor 'alexnet'", "choose digits, inception"),
    # Reference statistics and images.
    Case("reference-of-wrong-dimension", search("--ref", "{inputs}/wrong_dim.npz"),
         "has 10-d statistics but the digits extractor gives 128-d", "same --features"),
    Case("reference-missing-keys", search("--ref", "{inputs}/no_mu_sigma.npz"),
         "lacks ['mu', 'sigma']", "pass an .npz with mu"),
    Case("reference-holding-a-pickle", search("--ref", "{inputs}/pickled.npz"),
         "not a readable .npz file", "pass an .npz with mu and sigma"),
    Case("reference-folder-empty", search("--ref", "{inputs}/empty_ref"),
         "holds no .png/.jpg/.jpeg images", "point --ref at a folder"),
    Case("reference-image-undecodable", search("--ref", "{inputs}/undecodable_ref"),
         "0000.png cannot be read (", "remove or replace it"),
    Case("reference-image-unreadable", search("--ref", "{inputs}/io_error_ref"),
         "zzzz.png cannot be read (Input/output error)", "remove or replace it"),
    Case("reference-folder-unreadable", search("--ref", "{inputs}/locked_ref"),
         "locked_ref cannot be read (Permission denied)", "fix its permissions",
         skip="root reads any folder" if IS_ROOT else None),
    Case("reference-of-another-resolution", search("--ref", "{inputs}/big_ref"),
         "are 64×64×1", "convert the reference to 28×28 grayscale images"),
    Case("reference-of-another-channel-count", search("--ref", "{inputs}/rgb_ref"),
         "are 28×28×3", "convert the reference to 28×28 grayscale images"),
    # Databases.
    Case("database-url-malformed", search(), "cannot parse the database URL",
         "pass a path such as skiptune.db",
         db=f"postgresql+psycopg://me:{SECRET}@127.0.0.1:notaport/db"),
    Case("database-url-unknown-kind", search(), "no database driver for nosuchdb://",
         "use postgresql+psycopg://", db="nosuchdb://somewhere/x"),
    Case("database-in-a-read-only-place", search(), "read-only",
         "copy it to a writable folder", db="read-only"),
    Case("database-to-create-in-a-read-only-place", search(), "its place is read-only",
         "pass a path in a writable folder", db="/proc/skiptune-corpus.db"),
    Case("database-folder-missing", search(), "does not exist", "create it",
         db="{inputs}/no_such_folder/skiptune.db"),
    Case("file-that-is-no-database", search(), "is not a SQLite database",
         "pass another path with --db", db="copy:not_a_db.db"),
    Case("database-of-a-newer-skiptune", search(), "written by a newer skiptune (9.9.9",
         "upgrade skiptune", db="copy:newer.db", group=True),
    Case("sqlite-shared-by-workers", search("--workers", "2"), "cannot share SQLite",
         "use PostgreSQL"),
    Case("resume-with-other-settings", search("--seed", "1"),
         "was searched with other settings (objective.seed: 0 → 1", "--study NAME"),
    Case("study-group-with-spaces", search("--study", "my model"), "study group 'my model'",
         "pass e.g. --study mymodel"),
    # Devices.
    Case("cuda-without-a-gpu", search(device="cuda"), "no usable CUDA GPU",
         "use --device cpu",
         skip="this machine has a GPU" if torch.cuda.is_available() else None),
    Case("mps-without-apple-gpu", search(device="mps"), "not available on this machine",
         "use --device cpu",
         skip="this machine has MPS" if torch.backends.mps.is_available() else None),
    Case("meta-device", search(device="meta"), "cannot run a model here", "use --device cpu"),
]


# -- running them ----------------------------------------------------------------------------
#
# Each case is a process of its own (see tests/forked.py: forked from an interpreter that
# imported skiptune once, or a fresh one with SKIPTUNE_TESTS_FRESH=1), two at a time.

Run = subprocess.CompletedProcess[str]


@dataclass
class Prepared:
    """A case ready to run: its folder (the database in it) hashed, its arguments filled in."""

    case: Case
    folder: Path
    argv: list[str]                      # after the program name
    before: dict[str, str]
    pythonpath: Path | None
    skipped: str | None = None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative name → SHA-256), to see anything written."""
    return {p.relative_to(folder).as_posix(): _sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _make_read_only(folder: Path) -> str | None:
    """Make ``folder`` and its files unwritable even for root; why not, if that fails."""
    files = [p for p in folder.iterdir() if p.is_file()]
    done = subprocess.run(["chattr", "+i", *map(str, files), str(folder)],
                          capture_output=True, check=False) if shutil.which("chattr") else None
    if done is None or done.returncode != 0:
        for path in files:
            path.chmod(0o444)
        folder.chmod(0o555)
    if os.access(files[0], os.W_OK):
        return "cannot make a read-only place here (root without chattr)"
    return None


def _make_writable(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder), *map(str, folder.iterdir())],
                       capture_output=True, check=False)
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _prepare(case: Case, *, root: Path, inputs: Path, finished: Finished) -> Prepared:
    folder = root / case.id
    folder.mkdir()
    if case.db in ("finished", "read-only"):
        db = str(folder / "skiptune.db")
        # The database and the lock file its search left beside it, as a user has them.
        for source in finished.path.parent.glob(f"{finished.path.name}*"):
            shutil.copy(source, folder / source.name)
    elif case.db.startswith("copy:"):
        db = str(folder / case.db.removeprefix("copy:"))
        shutil.copy(inputs / case.db.removeprefix("copy:"), db)
    else:
        db = case.db.format(inputs=inputs)
    argv = [arg.format(inputs=inputs, demo=DEMO) for arg in case.argv] + ["--db", db]
    skipped = _make_read_only(folder) if case.db == "read-only" else None
    return Prepared(case, folder, argv, _snapshot(folder),
                    inputs / case.shim if case.shim else None, skipped)


def _run_case(prepared: Prepared, cache: Path) -> Run:
    group = prepared.case.group                 # `skiptune search`, or `skiptune-search`
    return run_command(Command(
        ("search", *prepared.argv) if group else tuple(prepared.argv), prepared.folder,
        {"SKIPTUNE_CACHE_DIR": str(cache)}, search_only=not group,
        path=(prepared.pythonpath,) if prepared.pythonpath else ()))


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             inputs: Path, finished: Finished) -> Iterator[dict[str, tuple[Prepared, Future[Run]]]]:
    """Start every selected case; each test waits for its own."""
    selected = [
        item.callspec.params["case"] for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    ]
    root = tmp_path_factory.mktemp("cases")
    prepared = [_prepare(case, root=root, inputs=inputs, finished=finished)
                for case in selected if case.skip is None]
    runnable = [p for p in prepared if p.skipped is None]
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        running = {p.case.id: pool.submit(_run_case, p, root / "cache") for p in runnable}
        yield {p.case.id: (p, running.get(p.case.id, Future())) for p in prepared}
    finally:
        pool.shutdown(cancel_futures=True)
        for p in prepared:
            if p.case.db == "read-only":
                _make_writable(p.folder)


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=pytest.mark.skipif(case.skip is not None,
                                                              reason=case.skip or ""))
    for case in CASES
])
def test_a_bad_input_is_one_clear_line_and_changes_nothing(
    case: Case, outcomes: dict[str, tuple[Prepared, Future[Run]]], inputs: Path
) -> None:
    prepared, running = outcomes[case.id]
    if prepared.skipped:
        pytest.skip(prepared.skipped)
    result = running.result(timeout=600)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == case.code, output
    assert result.stdout == "", output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.problem in lines[0], lines[0]
    assert case.fix in lines[0], lines[0]
    assert SECRET not in output
    # The database beside it, and anything else in the case's folder, is as it was.
    assert _snapshot(prepared.folder) == prepared.before
    assert not (inputs / "PWNED").exists()          # no pickled code ran


def test_the_corpus_is_large_and_every_case_names_a_fix() -> None:
    assert len(CASES) >= 25
    assert len({case.id for case in CASES}) == len(CASES)
    assert all(case.problem and case.fix and case.problem != case.fix for case in CASES)


# -- out of memory: the search goes on with smaller batches, and says so ---------------------

_OUT_OF_MEMORY_ABOVE_8 = """
import torch
import skiptune.objectives._samples as samples

real_sample = samples.sample

def sample(model, noise, **options):
    # A device that holds 8 images at a time; a larger batch fails as CUDA does.
    if noise.shape[0] > 8:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return real_sample(model, noise, **options)

samples.sample = sample
from skiptune.cli import search_main
search_main()
"""


def test_out_of_memory_halves_the_batch_says_so_once_and_measures_the_same(
    finished: Finished, tmp_path: Path
) -> None:
    db = tmp_path / "skiptune.db"
    command = [sys.executable, "-c", _OUT_OF_MEMORY_ABOVE_8, "--model", str(DEMO),
               "--nfe", "3", *TINY, "--device", "cpu", "--batch-size", "32", "--db", str(db),
               "--json"]
    result = _run(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # Rung 1 asks for 16 images at once: they fail, 8 fit, and 8 it stays for rung 2.
    # The note that --trials 1 measures only ρ = 1 (before the run), then the one warning.
    note, line = result.stderr.splitlines()
    assert line.startswith("warning: out of memory with 16 images per batch (CUDA out of "
                           "memory"), line
    assert note.startswith("note: --trials 1 measures only the baseline ρ = 1"), note
    assert "continuing with 8 per batch" in line and "same results" in line
    (summary,) = json.loads(result.stdout)
    # The same samples as the finished search's batches of 16 (seeds are per image), up to
    # float rounding: that differs with the batch size in the last bits of the denoiser's
    # output, and Heun at 3 NFE divides by σ = 0.002 on its last step, so a pixel may land
    # one 8-bit level apart. tests/badinput/test_out_of_memory.py shows the split run equal
    # bit for bit to one asked for batches of 8.
    assert summary["baseline_value"] == pytest.approx(finished.baseline_value, rel=1e-4)


# -- Ctrl-C mid-trial: the trial fails and is re-queued, the rest of the database stands -----


def _trial_rows(db: Path) -> dict[int, tuple[Any, ...]]:
    """Each trial's row with its values and parameters, by trial number."""
    with sqlite3.connect(db, timeout=30) as connection:
        rows = connection.execute(
            "SELECT t.number, t.state, t.datetime_start, t.datetime_complete, "
            "(SELECT group_concat(value) FROM trial_values v WHERE v.trial_id = t.trial_id), "
            "(SELECT group_concat(param_name || '=' || param_value) FROM trial_params p "
            " WHERE p.trial_id = t.trial_id) FROM trials t"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


# Where the Ctrl-C lands: inside the first new trial's second batch (batches of 16 at 3 NFE,
# three denoiser calls each), or as that trial has just been asked, before its first heartbeat.
CTRL_C_POINTS = {"mid-sampling": "sampling-step:5:INT", "just-asked": "trial-asked:1:INT"}


@pytest.mark.parametrize("where", CTRL_C_POINTS)
def test_ctrl_c_mid_trial_keeps_the_database_consistent_and_says_how_to_resume(
    where: str, finished: Finished, tmp_path: Path
) -> None:
    from skiptune.storage import open_storage
    from skiptune.tuner import StudyConfig
    from skiptune.tuner.search._front_writer import front_points_of

    db = tmp_path / "skiptune.db"
    shutil.copy(finished.path, db)
    # The baseline finished; the paper's schedules wait in the queue.
    kept = {n: row for n, row in _trial_rows(db).items() if row[0] != "WAITING"}
    assert [row[0] for row in kept.values()] == ["COMPLETE"]
    # The signal lands by a fail point rather than a timer (a timed signal missed when a busy
    # machine let the search finish first, or landed outside the trial).
    args = ("--model", str(DEMO), "--nfe", "3", "--rungs", "16,32", "--trials", "4",
            "--batch-size", "16", "--device", "cpu", "--db", str(db), "--quiet")
    env = {**cli_env(), "SKIPTUNE_FAILPOINTS": CTRL_C_POINTS[where]}
    process = subprocess.run(search_command(*args), env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=180, preexec_fn=default_ctrl_c)
    out, err = process.stdout, process.stderr

    assert process.returncode == 130, err
    assert "Traceback" not in out + err
    # --trials 4 runs the known points only: its note comes first, then the one error line.
    (line,) = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert line.startswith("error: interrupted") and "rerun the same command" in line

    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = _trial_rows(db)
    assert {n: rows[n] for n in kept} == kept         # what was finished, row for row
    assert not [n for n, row in rows.items() if row[0] == "RUNNING"]
    storage = open_storage(db)
    study = optuna.load_study(study_name=STUDY, storage=storage.optuna_storage())
    trials = study.get_trials()
    # The trial the signal landed in: failed by the interrupt, never half-told, queued again.
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.user_attrs["failure_kind"] == "interrupted"
    (queued,) = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
    assert queued.state == TrialState.WAITING and queued.params == failed.params
    config = StudyConfig.from_dict(study.user_attrs["skiptune_config"])
    recomputed = {(p.kind, p.value, p.trial_number) for p in front_points_of(study, config)}
    assert {(r.kind, r.value, r.trial_number) for r in storage.front_records()} == recomputed
    storage.dispose()
    if where != "mid-sampling":
        return                       # resuming is the same wherever the trial was failed

    # And the same command resumes: the total is reached, the interrupted schedule re-run.
    rerun = subprocess.run(search_command(*args), env=cli_env(), cwd=tmp_path,
                           capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name=STUDY, storage=open_storage(db).optuna_storage())
    trials = study.get_trials()
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for failed in [t for t in trials if t.state == TrialState.FAIL]:
        assert any(t.params == failed.params for t in done)
