"""Issue 38, classes 5, 6, 7, 9, 10, 11, 12 and 18 (in part): each bad input is one line.

Downloads are served from 127.0.0.1 by a raw socket server here (a malformed answer, a huge
Content-Length, a dripping body), with the download tests' cache fixture.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skiptune.errors import ConfigurationError
from skiptune.objectives import ObjectiveSettings
from tests.badinput.test_classes import _one_error, _run
from tests.downloads import test_fetch
from tests.tuner.helpers import DEMO

cache = test_fetch.cache            # a cache of its own per test, online


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server on 127.0.0.1 that reads a request and runs ``answer`` on the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/weights.bin"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _sends(data: bytes) -> Callable[[socket.socket], None]:
    return lambda connection: connection.sendall(data)


def _one_line_download_error(url: str, **kwargs: float) -> str:
    from skiptune.downloads import fetch
    from skiptune.errors import DownloadError

    with pytest.raises(DownloadError) as caught:
        fetch(url, **kwargs)          # type: ignore[arg-type]
    line = str(caught.value)
    assert "\n" not in line and line.startswith("cannot download file")
    return line


# --- Class 7: malformed HTTP answers ------------------------------------------------------

MALFORMED = {
    "a non-HTTP banner": b"SSH-2.0-OpenSSH_9.6\r\n",
    "a bad status code": b"HTTP/1.1 abc OK\r\n\r\n",
    "a bad chunk header": (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "a chunk cut short": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"100\r\nshort"),
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_http_answer_is_one_line_and_leaves_no_entry(name: str, cache: Path) -> None:
    from skiptune.downloads import entry_path

    with raw_server(_sends(MALFORMED[name])) as url:
        line = _one_line_download_error(url, timeout=3)
    assert "check the URL" in line, line
    assert not entry_path(url).exists()


# --- Class 6: download size and deadline --------------------------------------------------


def test_a_huge_content_length_is_refused_before_the_body(cache: Path) -> None:
    from skiptune.downloads import entry_path

    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    for length in (10**12, 10**30):
        answer = head + f"Content-Length: {length}\r\n\r\n".encode() + b"x" * 1000
        with raw_server(_sends(answer)) as url:
            line = _one_line_download_error(url, timeout=3)
        assert f"{length:,} bytes" in line and ("download may be" in line or "free" in line)
        assert not entry_path(url).exists()


def test_a_body_above_the_limit_is_refused_without_a_content_length(cache: Path) -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + b"x" * 5000
    with raw_server(_sends(answer)) as url:
        line = _one_line_download_error(url, timeout=3, max_bytes=1000)
    assert "1,000 bytes" in line


def test_a_declared_size_the_disk_cannot_hold_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _path: shutil._ntuple_diskusage(  # type: ignore[attr-defined]
        10**9, 10**9 - 4096, 4096))
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000)
    with raw_server(_sends(answer)) as url:
        line = _one_line_download_error(url, timeout=3)
    assert "4,096 bytes free" in line and "SKIPTUNE_CACHE_DIR" in line


def _drips(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                       b"Content-Length: 100000\r\n\r\n")
    for _ in range(100):
        connection.sendall(b"0123456789")
        time.sleep(0.1)


def test_a_dripping_server_meets_the_deadline(cache: Path) -> None:
    from skiptune.downloads import entry_path

    started = time.monotonic()
    with raw_server(_drips) as url:
        line = _one_line_download_error(url, timeout=3, deadline=1.0)
        assert time.monotonic() - started < 5
    assert "longer than 1 s" in line
    assert not entry_path(url).exists()


def test_a_dripping_server_is_given_up_as_too_slow(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skiptune import downloads

    monkeypatch.setattr(downloads, "SLOW_WINDOW_S", 0.5)
    with raw_server(_drips) as url:
        line = _one_line_download_error(url, timeout=3)
    assert "too slow" in line


# --- Class 6: counts ----------------------------------------------------------------------


@pytest.mark.parametrize("count", ["50001", "100000000000000000000000"])
def test_a_self_reference_above_50000_samples_is_refused_and_creates_nothing(
    tmp_path: Path, count: str
) -> None:
    result = _run("search", "--model", str(DEMO), "--nfe", "3", "--ref", f"self:heun:9:{count}",
                  cwd=tmp_path)
    line = _one_error(result, f"{int(count):,} samples", "above 50,000", "--allow-large-rungs")
    assert "--ref self:heun:79:2048" in line
    assert list(tmp_path.iterdir()) == []


def test_the_self_reference_cap_is_lifted_by_allow_large_rungs() -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.objectives import ObjectiveSettings
    from skiptune.tuner.study._config import check_self_reference_samples

    check_self_reference_samples("self:heun:9:50000", allowed=False)
    check_self_reference_samples("self:heun:9:10000000", allowed=True)
    check_self_reference_samples("refs/", allowed=False)
    with pytest.raises(ConfigurationError, match="above 50,000"):
        check_self_reference_samples(
            ObjectiveSettings(reference="self:euler:9:50001").reference, allowed=False)


@pytest.mark.parametrize("count", ["10001", "100000000000"])
def test_sample_refuses_a_huge_count_and_writes_nothing(tmp_path: Path, count: str) -> None:
    result = _run("sample", "--model", str(DEMO), "--nfe", "3", "-n", count, "-o", "x.png",
                  cwd=tmp_path)
    _one_error(result, "-n must be a whole number from 1 to 10,000", f"got {count}")
    assert list(tmp_path.iterdir()) == []


# --- Class 18: messages -------------------------------------------------------------------


def test_sample_names_the_allow_other_weights_flag(tmp_path: Path) -> None:
    from tests.badinput.test_issue38 import _export

    path = _export(tmp_path, sampler="heun", nfe=3, sigmas=None)
    result = _run("sample", "--model", str(DEMO), "--from", path.name, "-n", "2", "-o", "x.png",
                  cwd=tmp_path)
    line = _one_error(result, "searched on other weights", "pass --allow-other-weights")
    assert "allow_other_weights" not in line
    assert not (tmp_path / "x.png").exists()


# --- Class 5: a reference .npz is checked on its declared shapes --------------------------


def _npz_declaring(path: Path, arrays: dict[str, tuple[tuple[int, ...], str]]) -> Path:
    """An .npz whose members declare ``arrays`` (shape, dtype) but hold a few zero bytes:
    what np.load would have to inflate, it is never given."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (shape, dtype) in arrays.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
            archive.writestr(f"{name}.npy", header.getvalue() + b"\0" * 64)
    return path


HUGE = 23_000


@pytest.mark.parametrize(("arrays", "phrase"), [
    ({"mu": ((128,), "<f8"), "sigma": ((HUGE, HUGE), "<f8")},
     "sigma' declares shape (23000, 23000)"),
    ({"mu": ((HUGE,), "<f8"), "sigma": ((HUGE, HUGE), "<f8")}, "23000-d statistics but"),
    ({"mu": ((128,), "<f8"), "sigma": ((128, 128), "<f8"), "features": ((10**9, 128), "<f4")},
     "above the 4,294,967,296"),
    ({"mu": ((128,), "<f8"), "sigma": ((128, 128), "<f8"), "count": ((10**8,), "<i8")},
     "'count' declares shape"),
    ({"features": ((64, 127), "<f4")}, "127-d statistics but"),
    ({"mu": ((128,), "<f8"), "sigma": ((128, 64), "<f8")}, "not (128, 128)"),
])
def test_a_reference_npz_is_refused_on_its_declared_shapes_before_any_array_is_read(
    tmp_path: Path, arrays: dict[str, tuple[tuple[int, ...], str]], phrase: str
) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.objectives import load_feature_extractor, load_reference

    path = _npz_declaring(tmp_path / "ref.npz", arrays)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        load_reference(path, load_feature_extractor("digits"))
    line = str(caught.value)
    assert phrase in line and "\n" not in line, line
    assert time.monotonic() - started < 5


def test_a_reference_declaring_a_huge_sigma_is_one_line_at_the_command_line(tmp_path: Path) -> None:
    _npz_declaring(tmp_path / "ref.npz", {"mu": ((128,), "<f8"),
                                          "sigma": ((HUGE, HUGE), "<f8")})
    result = _run("search", "--model", str(DEMO), "--nfe", "3", "--ref", "ref.npz",
                  "--trials", "1", "--rungs", "4", cwd=tmp_path)
    _one_error(result, "ref.npz is not usable statistics", "sigma")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npz"]


# --- Class 9: the dashboard's address -----------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tuner.helpers import demo_database

    return demo_database(tmp_path_factory.mktemp("demo38more"))


def test_the_dashboard_on_a_busy_port_is_one_line(database: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        result = _run("dashboard", "--db", str(database), "--port", port, cwd=tmp_path)
    _one_error(result, f"127.0.0.1:{port}", "in use", "pass another --port")


@pytest.mark.parametrize("host", ["nosuch.invalid", "x" * 300, "256.1.1.1", "a..b"])
def test_the_dashboard_on_an_unresolvable_host_is_one_line(
    database: Path, tmp_path: Path, host: str
) -> None:
    result = _run("dashboard", "--db", str(database), "--host", host, "--port", "1",
                  cwd=tmp_path)
    _one_error(result, "--host", "cannot be resolved", "127.0.0.1")
    assert list(tmp_path.iterdir()) == []


def test_the_dashboard_on_an_address_of_another_machine_is_one_line(database: Path) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.tuner import serve_dashboard

    with pytest.raises(ConfigurationError, match=r"cannot serve the dashboard on 192\.0\.2\.1"):
        serve_dashboard(database, host="192.0.2.1", port=8080)     # TEST-NET: never local


# --- Class 10: a model name longer than any path or hub id -------------------------------

LONG = "x" * 300


@pytest.mark.parametrize("model", [f"{LONG}/b", f"a/{LONG}", LONG, f"org/{'y' * 5000}",
                                   f"{'é' * 200}/b"])
def test_a_model_name_longer_than_a_path_is_one_line_before_the_filesystem(model: str) -> None:
    from skiptune.errors import CheckpointError
    from skiptune.models import load_model

    with pytest.raises(CheckpointError) as caught:
        load_model(model)
    line = str(caught.value)
    assert "neither a path" in line and "hub id" in line and "\n" not in line, line
    assert len(line) < 400


def test_sample_with_a_300_character_hub_id_is_one_line(tmp_path: Path) -> None:
    result = _run("sample", "--model", f"{LONG}/b", "-n", "2", "-o", "x.png", cwd=tmp_path)
    _one_error(result, "neither a path", "check what was passed as --model")
    assert list(tmp_path.iterdir()) == []


# --- Class 18: an empty --revision or --variant -------------------------------------------


@pytest.mark.parametrize(("flag", "value"), [("--revision", ""), ("--revision", "  "),
                                             ("--variant", "")])
def test_an_empty_revision_or_variant_is_one_line(tmp_path: Path, flag: str, value: str) -> None:
    result = _run("sample", "--model", "org/name", flag, value, "-n", "2", "-o", "x.png",
                  cwd=tmp_path)
    _one_error(result, f"{flag[2:]} '", "' is empty", f"leave {flag} out")
    assert list(tmp_path.iterdir()) == []


# --- Class 12: a guidance scale beyond what a float holds ---------------------------------


def test_an_absurd_negative_or_non_finite_guidance_scale_is_one_line(tmp_path: Path) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.models import load_model
    from tests.models.tiny_sd import save_embeddings, save_pipeline

    folder = save_pipeline(tmp_path / "sd")
    embeddings = str(save_embeddings(tmp_path / "prompts.safetensors"))
    for scale in (-1e308, -1e10, -101.0, float("nan"), float("-inf"), "1e400"):
        with pytest.raises(ConfigurationError) as caught:
            load_model(folder, device="cpu",
                       conditioning={"embeddings": embeddings, "guidance_scale": scale})
        assert "from -100 to 100" in str(caught.value) and caught.value.field == "guidance_scale"
    for scale in (-100.0, 1.0, 100.0):
        load_model(folder, device="cpu",
                   conditioning={"embeddings": embeddings, "guidance_scale": scale})
    result = _run("sample", "--model", str(folder), "--embeddings", embeddings,
                  "--guidance-scale=-1e308", "-n", "2", "--nfe", "3", "-o", "x.npz",
                  "--device", "cpu", cwd=tmp_path)
    _one_error(result, "from -100 to 100", "--guidance-scale 7.5")
    assert not (tmp_path / "x.npz").exists()


# --- Class 11: a huge image in a reference folder -----------------------------------------


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width × height pixels; its data is a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30_000, 12_000, 4_200])
def test_a_huge_image_in_a_reference_folder_is_one_line(tmp_path: Path, side: int) -> None:
    from skiptune.errors import ConfigurationError
    from skiptune.objectives import load_feature_extractor, load_reference

    folder = tmp_path / "ref"
    folder.mkdir()
    _png_declaring(folder / "0000.png", side, side)
    with pytest.raises(ConfigurationError) as caught:
        load_reference(folder, load_feature_extractor("digits"), progress=False)
    line = str(caught.value)
    assert "0000.png" in line and "\n" not in line, line
    assert f"{side}×{side} pixels" in line or "decompression bomb" in line, line


def test_search_with_a_bomb_in_its_reference_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    _png_declaring(tmp_path / "ref" / "0000.png", 30_000, 30_000)
    result = _run("search", "--model", str(DEMO), "--nfe", "3", "--ref", "ref", "--trials", "1",
                  "--rungs", "4", cwd=tmp_path)
    _one_error(result, "0000.png", "900000000 pixels", "remove or replace it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]


# --- Class 18: report --study of no study; $SKIPTUNE_OFFLINE of another value -------------


def test_report_of_a_group_with_no_study_is_refused_like_best(
    database: Path, tmp_path: Path
) -> None:
    for group in ("nosuch", "demo"):
        result = _run("report", "--db", str(database), "--study", group, "-o", "page.html",
                      cwd=tmp_path)
        _one_error(result, f"no skiptune study of group {group!r}", "demo_unet",
                   "leave --study out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["maybe", "2", "onn", "ja"])
def test_skiptune_offline_of_another_value_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from skiptune.downloads import fetch, is_offline
    from skiptune.errors import ConfigurationError

    monkeypatch.setenv("SKIPTUNE_OFFLINE", value)
    with pytest.raises(ConfigurationError) as caught:
        is_offline()
    assert f"$SKIPTUNE_OFFLINE is {value!r}" in str(caught.value)
    with pytest.raises(ConfigurationError, match="neither on"):
        fetch("http://127.0.0.1:9/weights.bin")
    assert not cache.exists()
    for fine, offline in (("0", False), ("off", False), ("", False), (" Yes ", True)):
        monkeypatch.setenv("SKIPTUNE_OFFLINE", fine)
        assert is_offline() is offline


@pytest.mark.parametrize("spec", ["cleanfid:cifar10", "cleanfid:cifar10/train/", "cleanfid:",
                                  "cleanfid:cifar10/train/٣٢", "cleanfid:a/b/3_2/x"])
def test_a_malformed_cleanfid_spec_is_refused_when_the_config_is_built(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="must read cleanfid:NAME/SPLIT/RES") as info:
        ObjectiveSettings(reference=spec)
    assert "\n" not in str(info.value)


def test_a_malformed_cleanfid_spec_is_named_before_inception_is_needed(tmp_path: Path) -> None:
    # Offline, with Inception not cached: the spec is what is wrong, and the line says so.
    result = _run("search", "--model", str(DEMO), "--nfe", "3", "--features", "inception",
                  "--ref", "cleanfid:cifar10/32", "--offline", "--db", str(tmp_path / "s.db"),
                  cwd=tmp_path)
    _one_error(result, "must read cleanfid:NAME/SPLIT/RES")
    assert not (tmp_path / "s.db").exists()
