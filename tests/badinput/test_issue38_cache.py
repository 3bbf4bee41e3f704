"""Issue 38, class 14: what the download cache keeps, and what it says of a bad entry.

- An HTML page, whatever its Content-Type, and a body sent encoded (gzip...) are not the
  file: refused in one line, leaving no entry, so the next run downloads the file.
- A pinned URL's entry is judged by its pin: tampered with, it is downloaded again
  (offline: refused), as docs/downloads.md says.
- A body whole per HTTP but not a usable file is cached (only the loader can tell); the
  loader's line then says to delete that entry, not to "copy it again".

Served from 127.0.0.1 by the download tests' server, with their cache fixture.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from skiptune import downloads
from skiptune.errors import SkiptuneError
from tests.downloads import test_fetch
from tests.downloads.server import FileServer
from tests.downloads.test_fetch import PAYLOAD
from tests.tuner.helpers import DEMO

cache = test_fetch.cache            # the download tests' fixtures: a cache per test, online
server = test_fetch.server

PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in</body></html>\n"
OCTETS = {"Content-Type": "application/octet-stream"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _not_the_file() -> dict[str, tuple[bytes, dict[str, str], str]]:
    """Answers whole per HTTP that are not the file: body, headers, a phrase of the refusal."""
    return {
        "a page as octet-stream": (PAGE, OCTETS, "an HTML page, not the file"),
        "a page with no type, after a BOM, blanks and a comment": (
            b"\xef\xbb\xbf\r\n  <!-- edge 7 -->\n<HTML lang=en><body>403</body></HTML>", {},
            "an HTML page, not the file"),
        "a page starting at <head>": (b"<head><meta charset=utf-8></head>", OCTETS,
                                      "an HTML page, not the file"),
        "a gzip-encoded body": (gzip.compress(PAYLOAD), {**OCTETS, "Content-Encoding": "gzip"},
                                "(Content-Encoding: gzip)"),
        "a brotli-encoded body": (b"\x1b\xff\x0f" + PAYLOAD[:100], {"Content-Encoding": "br"},
                                  "(Content-Encoding: br)"),
    }


def test_a_page_or_an_encoded_body_leaves_no_entry(cache: Path, server: FileServer) -> None:
    for number, (name, (body, headers, phrase)) in enumerate(_not_the_file().items()):
        file = f"file{number}.bin"
        url = server.url(file)
        server.answers[file] = (body, headers)
        with pytest.raises(SkiptuneError) as caught:
            downloads.fetch(url, what="model")
        line = str(caught.value)
        assert "\n" not in line and phrase in line and f"cannot download model {url}" in line, (
            name, line)
        assert not downloads.entry_path(url).parent.exists(), name
        # The server put right: the next run downloads the file (no entry stands in its way).
        del server.answers[file]
        (server.folder / file).write_bytes(PAYLOAD)
        assert downloads.fetch(url).read_bytes() == PAYLOAD, name
    # skiptune asks for the file's own bytes; a server that encodes anyway is refused above.
    assert all(sent.get("Accept-Encoding") == "identity" for sent in server.request_headers)
    assert not any((cache / "downloads" / ".partial").iterdir())


def test_a_file_that_only_starts_like_markup_is_cached(server: FileServer) -> None:
    """The page check reads how the body starts, not a "<": a safetensors file whose header is
    60 bytes long starts with b"<", and text files may start with a tag."""
    for number, body in enumerate((b"<" + bytes(7) + PAYLOAD, b"<htmlish>\n" + PAYLOAD,
                                   b"<!-- a note -->\n" + PAYLOAD)):
        server.answers[f"ok{number}.bin"] = (body, OCTETS)
        assert downloads.fetch(server.url(f"ok{number}.bin")).read_bytes() == body


def test_a_tampered_pinned_entry_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    url = server.url("weights.bin")
    pinned = f"{url}#sha256={_sha(PAYLOAD)}"
    entry = downloads.fetch(pinned)
    record = entry.with_name(entry.name + ".sha256")
    private = tmp_path / "private.txt"
    private.write_text("root:x:0:0:root:/root:/bin/bash\n")
    file_changes: dict[str, Callable[[], object]] = {
        "bytes changed in place": lambda: entry.write_bytes(b"tampered" + PAYLOAD[8:]),
        "cut short": lambda: entry.write_bytes(PAYLOAD[:1000]),
        "file and record changed together": lambda: (
            entry.write_bytes(PAYLOAD[::-1]), record.write_text(_sha(PAYLOAD[::-1]) + "\n")),
    }
    for name, change in file_changes.items():
        requests = len(server.requests)
        change()
        assert downloads.fetch(pinned).read_bytes() == PAYLOAD, name
        assert len(server.requests) == requests + 1, name
        assert record.read_text().strip() == _sha(PAYLOAD), name
    # Only the record changed: the pin says the file is right, so it is used as it is.
    for change in (lambda: record.write_text("0" * 64 + "\n"),
                   lambda: (record.unlink(), record.symlink_to(private))):
        requests = len(server.requests)
        change()
        assert downloads.fetch(pinned).read_bytes() == PAYLOAD
        assert len(server.requests) == requests
    assert private.read_text().startswith("root:x")
    # Offline, a pinned entry that does not match its pin cannot be replaced: one line.
    record.unlink()
    entry.write_bytes(b"tampered" + PAYLOAD[8:])
    with downloads.offline_mode(), pytest.raises(SkiptuneError) as caught:
        downloads.fetch(pinned, what="model")
    line = str(caught.value)
    assert "\n" not in line and f"not the pinned {_sha(PAYLOAD)}" in line
    assert "without offline mode" in line


def _whole_but_wrong(good: bytes) -> dict[str, tuple[bytes, str]]:
    """Bodies a server may send whole for a model file: (body, a phrase of the loader's line)."""
    return {
        "half a checkpoint": (good[: len(good) // 2], "not a readable torch checkpoint"),
        "a text page sent as octet-stream": (b"Access denied: log in first\n",
                                             "neither a zip archive"),
    }


def test_a_whole_but_wrong_model_download_says_to_delete_its_entry(
    server: FileServer, tmp_path: Path
) -> None:
    from skiptune.models import load_model

    good = DEMO.read_bytes()
    url = server.url("demo_unet.pt")
    entry = downloads.entry_path(url)
    for name, (body, phrase) in _whole_but_wrong(good).items():
        (server.folder / "demo_unet.pt").write_bytes(body)
        with pytest.raises(SkiptuneError) as caught:
            load_model(url, device="cpu")
        line = str(caught.value)
        assert "\n" not in line and phrase in line, (name, line)
        assert f"delete {entry.parent} to download it again" in line, (name, line)
        assert "copy it again" not in line, (name, line)
        # As the line says: with the server's file right and the entry deleted, it loads.
        (server.folder / "demo_unet.pt").write_bytes(good)
        shutil.rmtree(entry.parent)
        load_model(url, device="cpu")
        shutil.rmtree(entry.parent)
        # The same bytes as the user's own file: that one is copied again, not deleted.
        own = tmp_path / "own.pt"
        own.write_bytes(body)
        with pytest.raises(SkiptuneError) as caught:
            load_model(own, device="cpu")
        assert "delete" not in str(caught.value) and phrase in str(caught.value), name


def test_every_loader_of_a_fetched_file_says_to_delete_its_entry(server: FileServer) -> None:
    """An EDM snapshot, a reference .npz and a TorchScript (Inception) file, each whole per
    HTTP but damaged: each loader's line names the entry to delete."""
    from skiptune.models import load_model
    from skiptune.objectives import load_feature_extractor, load_reference
    from skiptune.objectives._features import _load_torchscript

    damaged = {         # file: (body, a phrase of its loader's line)
        # How an EDM snapshot starts (a dict naming EDM's persistence module), cut short.
        "network-snapshot.pkl": (b"\x80\x04}\x94(\x8c\x03ema\x94\x8c\x17torch_utils.persistence",
                                 "is truncated or damaged"),
        "reference.npz": (b"PK\x03\x04" + bytes(60), "is not a readable .npz file"),
        "inception-2015-12-05.pt": (b"PK\x03\x04" + PAYLOAD[:4000],
                                    "is not a loadable TorchScript file"),
    }
    for file, (body, _) in damaged.items():
        (server.folder / file).write_bytes(body)
    loaders: dict[str, Callable[[str], object]] = {
        "network-snapshot.pkl": lambda url: load_model(url, device="cpu"),
        "reference.npz": lambda url: load_reference(
            url, load_feature_extractor("digits", device="cpu")),
        "inception-2015-12-05.pt": lambda url: _load_torchscript(
            downloads.fetch(url), what="Inception-v3 weights"),
    }
    for file, load in loaders.items():
        url = server.url(file)
        with pytest.raises(SkiptuneError) as caught:
            load(url)
        line = str(caught.value)
        assert "\n" not in line and damaged[file][1] in line, line
        assert f"delete {downloads.entry_path(url).parent} to download it again" in line, line
        assert "copy or download it again" not in line and "pass an .npz" not in line, line
