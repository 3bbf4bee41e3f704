"""The roots of the bad-input classes, one function each, tested without a command line.

Reading and writing files (``skiptune._files``), masking URLs, checkpoint bytes and their
checksum, reference covariances, scheduler configs, adapters that raise, the optimizer's seed,
re-queued schedules, and the limits a search refuses to cross.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from skiptune._files import read_input, read_text, write_atomically
from skiptune.errors import (
    CheckpointError,
    ConfigurationError,
    FileAccessError,
    ModelError,
    StorageError,
)
from skiptune.models import _diffusers_common, load_model
from skiptune.models.custom import wrap_module
from skiptune.objectives._reference import _check_covariance
from skiptune.sampling import save_images
from skiptune.sampling._images import grid_scale
from skiptune.storage import PendingStatisticsCache, mask_url
from skiptune.storage._url import scrub
from skiptune.tuner.search._run import _requeue
from skiptune.tuner.search._space import sampler_seed
from skiptune.tuner.study import default_group
from skiptune.tuner.study._config import MAX_RUNG, check_heartbeat, check_rungs
from tests.tuner.helpers import DEMO

DEMO_FINGERPRINT = "b0211bab3eda80d0e35284f0114d827dd64210f0618bc3b5b86c5c39fa6030ec"


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text, text
    return text


# -- writing outputs ---------------------------------------------------------------------------

OLD_EXPORT = '{"format": "skiptune-schedule", "nfe": 9}\n'   # what the writer rule may replace


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_an_atomic_write_replaces_the_file_keeps_its_mode_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "rho.json"
    target.write_text(OLD_EXPORT)
    target.chmod(0o640)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "rho.json"
    target.write_text(OLD_EXPORT)

    def half_then_fail(handle: object) -> None:
        handle.write(b"half")                               # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(FileAccessError, match="No space left on device") as caught:
        write_atomically(target, half_then_fail)
    _one_line(caught.value)
    assert target.read_text() == OLD_EXPORT
    assert _leftovers(tmp_path) == []


def test_a_symlink_is_refused_and_left_pointing_where_it_pointed(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("kept")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(FileAccessError, match="symbolic link"):
        write_atomically(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real) and real.read_text() == "kept"


def test_a_device_node_and_a_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match="not a regular file"):
        write_atomically("/dev/null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(FileAccessError, match="is a folder; pass a file name inside it"):
        write_atomically(tmp_path, b"x", suffixes=(".png",))


def test_an_unsupported_extension_is_refused_with_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match=r"unsupported extension '\.jpg'; use one of "
                       r"\.png, \.svg, \.pdf"):
        write_atomically(tmp_path / "front.jpg", b"x", suffixes=(".png", ".svg", ".pdf"))
    assert list(tmp_path.iterdir()) == []


# -- reading inputs ----------------------------------------------------------------------------


def test_unreadable_inputs_are_one_line_each(tmp_path: Path) -> None:
    binary = tmp_path / "rho.json"
    binary.write_bytes(bytes(range(256)))
    cases = [
        (lambda: read_input(tmp_path / "missing", what="x", fix="fix"), "not found"),
        (lambda: read_input(tmp_path, what="x", fix="fix"), "is a folder"),
        (lambda: read_input("/proc/self/mem", what="x", fix="fix"), "cannot be read"),
        (lambda: read_input(tmp_path / ("n" * 300), what="x", fix="fix"), "File name too long"),
        (lambda: read_text(binary, what="--from file", fix="fix"), r"is not text \(byte 128"),
    ]
    for call, phrase in cases:
        with pytest.raises(FileAccessError, match=phrase) as caught:
            call()
        _one_line(caught.value)


# -- secrets in URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://me:SECRETPW@db/x",
    "postgresql+psycopg://me@db/x?password=SECRETPW",
    "postgresql+psycopg://me@db/x?sslmode=require&sslpassword=SECRETPW",
    "postgresql+psycopg://me@db/x?pass%77ord=SECRETPW",
    "postgresql+psycopg://me@db/x?PASSWORD=SECRETPW;application_name=a",
    "postgresql+psycopg://me:SECRET%40PW@db:notaport/x",          # not even parseable
    "mysql://me@db/x?token=SECRETPW#frag",
])
def test_every_way_a_url_carries_a_secret_is_masked(url: str) -> None:
    masked = mask_url(url)
    assert "SECRET" not in masked and "***" in masked, masked
    assert masked.startswith(url.split("://")[0] + "://me")


def test_a_passfile_is_shown_and_a_driver_echo_is_scrubbed() -> None:
    from sqlalchemy.engine import make_url

    url = make_url("postgresql+psycopg://me@db/x?password=S%40CRET&passfile=/home/me/.pgpass")
    assert "/home/me/.pgpass" in mask_url(url) or "%2Fhome%2Fme%2F.pgpass" in mask_url(url)
    assert scrub('FATAL: password "S@CRET" and S%40CRET refused', url) == (
        'FATAL: password "***" and *** refused')


# -- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_are_not_a_checkpoint_nor_called_pickled_objects(
    seed: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "random.pt"
    head = [b"", b"\x80\x02", b"PK\x03\x04"][seed % 3]      # also after a pickle or zip header
    path.write_bytes(head + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as caught:
        load_model(path, device="cpu")
    line = _one_line(caught.value)
    assert "pickled Python objects" not in line
    assert "neither a zip archive" in line or "truncated or damaged" in line


def test_flipped_tensor_bytes_fail_the_checksum_and_old_checkpoints_still_load(
    tmp_path: Path,
) -> None:
    payload = torch.load(DEMO, map_location="cpu", weights_only=True)
    assert payload["ema_sha256"] == DEMO_FINGERPRINT      # the shipped demo carries it...
    assert load_model(DEMO, device="cpu").fingerprint == DEMO_FINGERPRINT   # ...bit-identical
    name = sorted(payload["ema"])[3]
    flipped = payload["ema"][name].clone()
    flipped.view(torch.uint8)[:64] ^= 0x10               # a few flipped bits, still finite
    torch.save({**payload, "ema": {**payload["ema"], name: flipped}}, tmp_path / "flip.pt")
    with pytest.raises(CheckpointError, match="is damaged: its tensors' SHA-256") as caught:
        load_model(tmp_path / "flip.pt", device="cpu")
    _one_line(caught.value)
    old = {k: v for k, v in payload.items() if k != "ema_sha256"}   # written before checksums
    torch.save(old, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt", device="cpu").fingerprint == DEMO_FINGERPRINT


# -- reference statistics ----------------------------------------------------------------------


def test_a_covariance_that_is_not_psd_is_refused() -> None:
    features = np.random.default_rng(0).normal(size=(50, 8))
    _check_covariance(np.cov(features, rowvar=False), source="ok.npz")       # accepted
    _check_covariance(np.zeros((8, 8)), source="zero.npz")                    # PSD, singular
    with pytest.raises(ConfigurationError, match="not positive semi-definite"):
        _check_covariance(-np.eye(8), source="neg.npz")
    with pytest.raises(ConfigurationError, match="not symmetric"):
        _check_covariance(np.triu(np.ones((8, 8))), source="tri.npz")


def test_pending_statistics_reach_the_database_only_when_flushed() -> None:
    class Cache(dict):
        def get(self, key):  # type: ignore[override]
            return super().get(key)

        def put(self, key, mu, sigma, *, meta):
            self[key] = (mu, sigma)

    source, target = Cache(a=("mu", "sigma")), Cache()
    pending = PendingStatisticsCache(source)
    assert pending.get("a") == ("mu", "sigma")
    pending.put("b", np.zeros(2), np.eye(2), meta={})
    assert "b" not in target and "b" not in source and pending.get("b") is not None
    pending.flush_into(target)
    assert set(target) == {"b"} and pending.get("a") is None           # the database's now


# -- diffusers scheduler configs and adapters --------------------------------------------------


@pytest.mark.parametrize("config", [
    {"beta_schedule": "linear", "num_train_timesteps": "1000"},
    {"beta_schedule": "linear", "num_train_timesteps": 10**12},
    {"beta_schedule": "linear", "num_train_timesteps": True},
    {"beta_schedule": "linear", "beta_start": "small"},
    {"beta_schedule": "linear", "beta_end": float("nan")},
    {"beta_schedule": ["linear"]},
    {"trained_betas": "0.1,0.2"},
    {"trained_betas": [0.1, None]},
    {"trained_betas": [0.01] * 1_000_000},
])
def test_scheduler_values_of_the_wrong_type_or_size_are_one_line(config: dict) -> None:
    with pytest.raises(CheckpointError, match="the scheduler config's") as caught:
        _diffusers_common.discrete_sigmas_from_scheduler_config(config)
    _one_line(caught.value)


def test_an_adapter_whose_denoise_raises_is_one_line_naming_it() -> None:
    from tests.models.additive_unet import adapter

    custom = adapter()

    def broken(net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise KeyError("the\nmulti-line reason")

    with pytest.raises(ModelError, match=r"adapter my_unets:adapter's denoise raised KeyError"):
        wrap_module(custom.net, denoise=broken, skip_sites=custom.skip_sites,
                    image_shape=custom.image_shape, sigma_min=custom.sigma_min,
                    sigma_max=custom.sigma_max, sigma_data=custom.sigma_data,
                    name="adapter my_unets:adapter")


# -- search limits, seeds, groups, grids -------------------------------------------------------


def test_grace_under_two_heartbeats_and_absurd_rungs_are_refused() -> None:
    check_heartbeat(10, 20)
    with pytest.raises(ConfigurationError, match=r"^grace_period 19 is under two heartbeats"):
        check_heartbeat(10, 19)
    check_rungs((64, MAX_RUNG), allowed=False)
    with pytest.raises(ConfigurationError, match="allow_large_rungs=True"):
        check_rungs((64, 10**10), allowed=False)
    check_rungs((64, 10**10), allowed=True)


def test_the_optimizer_seed_follows_the_history() -> None:
    seeds = {sampler_seed(0, history=n) for n in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**32 for s in seeds)
    assert sampler_seed(0, history=5) == sampler_seed(0, history=5)
    assert sampler_seed(0, worker=1, history=5) != sampler_seed(0, history=5)


def test_a_requeued_trial_keeps_its_whole_queued_schedule() -> None:
    study = optuna.create_study()
    schedule = {"rho_bottom": 0.91, "rho_top": 0.96, "shape": "linear"}
    study.enqueue_trial(schedule)
    trial = study.ask()
    trial.suggest_float("rho_bottom", 0.3, 1.2)           # stopped before the other suggests
    study.tell(trial, state=TrialState.FAIL)
    _requeue(study, study.trials[0])
    retry = study.ask()
    got = {"rho_bottom": retry.suggest_float("rho_bottom", 0.3, 1.2),
           "rho_top": retry.suggest_float("rho_top", 0.3, 1.2),
           "shape": retry.suggest_categorical("shape", ["linear", "cosine"])}
    assert got == schedule


def test_adapter_studies_are_grouped_under_their_module() -> None:
    assert default_group("my_unets:adapter") == "my_unets"
    assert default_group("lab.nets.unet64:load") == "unet64"


def test_small_image_grids_are_enlarged_to_a_readable_width(tmp_path: Path) -> None:
    from PIL import Image

    assert grid_scale(242) == 3 and grid_scale(600) == 1
    path = save_images(torch.zeros(64, 1, 28, 28), tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.width >= 480 and image.width % 242 == 0     # whole-factor nearest


def test_storage_errors_from_a_too_long_db_name(tmp_path: Path) -> None:
    from skiptune.storage import open_storage

    with pytest.raises(StorageError, match="File name too long") as caught:
        open_storage(tmp_path / ("d" * 300 + ".db"))
    _one_line(caught.value)
    assert json.dumps(sorted(os.listdir(tmp_path))) == "[]"


_RESET_INTERRUPTED = """
import sqlalchemy
from sqlalchemy import event
import skiptune.cli as cli

def command():
    engine = sqlalchemy.create_engine("sqlite://")

    @event.listens_for(engine, "reset")
    def interrupted(*_args):
        raise KeyboardInterrupt          # a Ctrl-C landing inside the pool's reset

    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))

{run}
"""


@pytest.mark.parametrize("through_the_edge", [True, False])
def test_a_ctrl_c_inside_a_connections_reset_prints_no_traceback(through_the_edge: bool) -> None:
    """SQLAlchemy logs an interrupted pool reset with a traceback; the command line's edge
    (and a search worker) keep it off stderr and print their own line. Without the edge the
    traceback shows: the case is real."""
    run = "cli._edge(command)" if through_the_edge else "command()"
    result = subprocess.run([sys.executable, "-c", _RESET_INTERRUPTED.format(run=run)],
                            capture_output=True, text=True, timeout=120)
    if through_the_edge:
        assert result.returncode == 130, result.stderr
        assert "Traceback" not in result.stderr and "reset" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    else:
        assert "Exception during reset or similar" in result.stderr
