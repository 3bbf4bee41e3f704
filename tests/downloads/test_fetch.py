"""skiptune.downloads.fetch against a real HTTP server on 127.0.0.1: the checked cache."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiptune import downloads
from skiptune.errors import ConfigurationError, DownloadError
from tests.downloads.server import FileServer, serving
from tests.tuner.helpers import cli_env

PAYLOAD = bytes(range(256)) * 4096          # 1 MiB: several chunks of a streamed body


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(folder))
    monkeypatch.delenv("SKIPTUNE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return folder


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    files = tmp_path / "served"
    files.mkdir()
    (files / "weights.bin").write_bytes(PAYLOAD)
    with serving(files) as running:
        yield running


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def test_downloads_once_records_the_checksum_and_reuses_without_the_server(
    server: FileServer, cache: Path
) -> None:
    seen: list[downloads.DownloadProgress] = []
    path = downloads.fetch(server.url("weights.bin"), progress=seen.append)
    assert path.read_bytes() == PAYLOAD
    assert path == downloads.entry_path(server.url("weights.bin"))
    assert path.is_relative_to(cache / "downloads")
    assert (path.parent / "weights.bin.sha256").read_text().strip() == _sha(PAYLOAD)
    assert seen[-1].finished and seen[-1].done == seen[-1].total == len(PAYLOAD)
    assert [p.done for p in seen[:-1]] == sorted(p.done for p in seen[:-1])
    server.stop()
    assert downloads.fetch(server.url("weights.bin")) == path   # no server: from the cache
    assert server.requests == ["weights.bin"]


def test_a_pin_is_checked_on_download_and_a_changed_file_refused_in_one_line(
    server: FileServer, cache: Path
) -> None:
    pinned = f"{server.url('weights.bin')}#sha256={_sha(PAYLOAD)}"
    assert downloads.fetch(pinned).read_bytes() == PAYLOAD
    (server.folder / "other.bin").write_bytes(PAYLOAD[::-1])
    with pytest.raises(DownloadError) as caught:
        downloads.fetch(f"{server.url('other.bin')}#sha256={_sha(PAYLOAD)}", what="model")
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot download model {server.url('other.bin')}" in message
    assert f"not the pinned {_sha(PAYLOAD)}" in message
    assert not downloads.entry_path(server.url("other.bin")).exists()
    assert not any((cache / "downloads" / ".partial").iterdir())


def test_a_new_pin_downloads_the_file_again_and_a_malformed_pin_is_refused(
    server: FileServer,
) -> None:
    url = server.url("weights.bin")
    downloads.fetch(url)
    (server.folder / "weights.bin").write_bytes(PAYLOAD[::-1])
    assert downloads.fetch(f"{url}#sha256={_sha(PAYLOAD[::-1])}").read_bytes() == PAYLOAD[::-1]
    with pytest.raises(ConfigurationError, match="#sha256=<64 hex digits>"):
        downloads.fetch(f"{url}#sha256=abc")


def test_a_tampered_cached_file_is_refused_not_used(server: FileServer) -> None:
    path = downloads.fetch(server.url("weights.bin"))
    path.write_bytes(b"tampered" + PAYLOAD[8:])
    with pytest.raises(DownloadError, match="no longer matches the SHA-256 recorded") as caught:
        downloads.fetch(server.url("weights.bin"), what="model")
    assert f"delete it to download {server.url('weights.bin')} again" in str(caught.value)
    assert server.requests == ["weights.bin"]


@pytest.mark.parametrize("switch", ["SKIPTUNE_OFFLINE", "HF_HUB_OFFLINE", "argument"])
def test_offline_refuses_a_missing_file_naming_it_its_url_and_where_to_put_it(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    if switch != "argument":
        monkeypatch.setenv(switch, "1")
    url = server.url("weights.bin")
    with pytest.raises(DownloadError) as caught:
        downloads.fetch(url, what="model", offline=True if switch == "argument" else None)
    entry = downloads.entry_path(url)
    assert str(caught.value) == (
        f"offline ({'offline=True' if switch == 'argument' else f'${switch} is set'}): model "
        f"weights.bin is not in skiptune's cache; download {url} and put it at {entry}, or run "
        "once without offline mode"
    )
    assert server.requests == []
    # Put there by hand, as the line says: used offline, and its checksum recorded.
    entry.parent.mkdir(parents=True)
    entry.write_bytes(PAYLOAD)
    with downloads.offline_mode():
        assert downloads.fetch(url) == entry
    assert (entry.parent / "weights.bin.sha256").read_text().strip() == _sha(PAYLOAD)


def test_offline_mode_names_its_own_switch_not_the_variable_it_sets(
    server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--offline sets $SKIPTUNE_OFFLINE for its workers; the refusal names the flag."""
    monkeypatch.delenv("SKIPTUNE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with downloads.offline_mode(why="--offline"), pytest.raises(DownloadError) as caught:
        downloads.fetch(server.url("flag.bin"), what="model")
    assert str(caught.value).startswith("offline (--offline was given): model flag.bin ")
    assert server.requests == []


def test_a_worker_process_of_an_offline_block_names_the_flag_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worker processes inherit $SKIPTUNE_OFFLINE from the block; they name --offline too."""
    monkeypatch.delenv("SKIPTUNE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code = "from skiptune.downloads import offline_reason; print(offline_reason())"
    with downloads.offline_mode(why="--offline"):
        worker = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env=cli_env())
    assert worker.stdout.strip() == "--offline was given"
    assert "SKIPTUNE_OFFLINE_WHY" not in os.environ     # restored after the block
    monkeypatch.setenv("SKIPTUNE_OFFLINE", "1")           # the user's own variable
    assert downloads.offline_reason() == "$SKIPTUNE_OFFLINE is set"


def test_http_errors_and_html_pages_are_one_line_and_leave_nothing(
    server: FileServer, cache: Path
) -> None:
    with pytest.raises(DownloadError, match=r"\(HTTP 404 File not found\); check the URL"):
        downloads.fetch(server.url("missing.pt"))
    (server.folder / "login.html").write_text("<html>sign in</html>")
    with pytest.raises(DownloadError, match="an HTML page, not the file"):
        downloads.fetch(server.url("login.html"))
    with pytest.raises(ConfigurationError, match="is not an http:// or https:// URL"):
        downloads.fetch("ftp://127.0.0.1/x")
    assert _cache_files(cache) == []


def test_a_connection_cut_half_way_leaves_nothing(server: FileServer, cache: Path) -> None:
    server.stall.add("weights.bin")
    with pytest.raises(DownloadError, match=r"no data for 0\.5 s"):
        downloads.fetch(server.url("weights.bin"), timeout=0.5)
    assert _cache_files(cache) == []


def test_the_cache_path_stays_inside_the_cache_whatever_the_url_holds(cache: Path) -> None:
    for url in ("http://127.0.0.1:1/../../etc/passwd", "http://127.0.0.1:1/%2e%2e%2fx/..",
                "https://127.0.0.1:1/", "http://127.0.0.1:1/a/..%2F..%2F.bashrc?x=/../y"):
        entry = downloads.entry_path(url)
        assert entry.parent.parent == cache / "downloads"
        assert entry.name not in ("", ".", "..") and not entry.name.startswith(".")
        assert "/" not in entry.name
    assert downloads.entry_path("http://h/a.pt") != downloads.entry_path("http://g/a.pt")


def test_a_download_killed_half_way_leaves_the_cache_clean(
    server: FileServer, cache: Path
) -> None:
    server.stall.add("weights.bin")
    url = server.url("weights.bin")
    child = subprocess.Popen(
        [sys.executable, "-c", f"from skiptune.downloads import fetch; fetch({url!r})"],
        env={**cli_env(), "SKIPTUNE_CACHE_DIR": str(cache)},
    )
    partials = cache / "downloads" / ".partial"
    deadline = time.monotonic() + 60
    while not (partials.is_dir() and any(p.stat().st_size for p in partials.iterdir())):
        assert child.poll() is None and time.monotonic() < deadline, "no partial file appeared"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    entry = downloads.entry_path(url)
    assert not entry.exists()                # the half file is never an entry
    server.stall.clear()
    assert downloads.fetch(url).read_bytes() == PAYLOAD
    assert not any(partials.iterdir())       # the dead process's partial file was removed
    assert _cache_files(cache) == sorted(
        str(p.relative_to(cache)) for p in (entry, entry.parent / "weights.bin.sha256")
    )
