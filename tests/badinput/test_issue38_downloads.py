"""Issue 38, class 2, at the downloader: a URL with a password is refused before any request,
a download error masks its URL's token, and a cache entry's checksum record is untrusted input.

Served from 127.0.0.1 by the download tests' server, with their cache fixture (a cache of its
own per test, online).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.downloads import test_fetch
from tests.downloads.server import FileServer

cache = test_fetch.cache            # the download tests' fixtures: a cache per test, online
server = test_fetch.server

SECRET = "hunter2SECRET"


def test_a_url_with_a_password_is_refused_before_any_request(
    cache: Path, server: FileServer
) -> None:
    from skiptune.downloads import fetch
    from skiptune.errors import ConfigurationError

    for userinfo in (f"me:{SECRET}@", "me@", f":{SECRET}@"):
        url = server.url("weights.bin").replace("://", f"://{userinfo}")
        with pytest.raises(ConfigurationError) as caught:
            fetch(url)
        line = str(caught.value)
        assert "\n" not in line and SECRET not in line
        assert "user name or password" in line and "put it at" in line
    assert server.requests == [] and not cache.exists()


def test_a_download_error_masks_the_token_of_its_url(cache: Path, server: FileServer) -> None:
    from skiptune.downloads import fetch
    from skiptune.errors import DownloadError

    with pytest.raises(DownloadError) as caught:
        fetch(server.url(f"missing.bin?token={SECRET}&x=1"))
    assert "HTTP 404" in str(caught.value) and SECRET not in str(caught.value)


def _cached(server: FileServer) -> tuple[Path, Path]:
    from skiptune.downloads import entry_path, fetch

    url = server.url("weights.bin")
    entry = fetch(url)
    assert entry == entry_path(url)
    return entry, entry.with_name(entry.name + ".sha256")


def test_a_checksum_record_is_untrusted_input(
    cache: Path, server: FileServer, tmp_path: Path
) -> None:
    from skiptune.downloads import fetch
    from skiptune.errors import SkiptuneError

    entry, record = _cached(server)
    private = tmp_path / "passwd"
    private.write_text("root:x:0:0:root:/root:/bin/bash\n")
    variants = {
        "a link to another file": lambda: record.symlink_to(private),
        "a link to a device": lambda: record.symlink_to("/dev/zero"),
        "a FIFO": lambda: os.mkfifo(record),
        "a huge file": lambda: record.write_bytes(b"0" * 10_000_000),
        "not hex": lambda: record.write_text("z" * 64 + "\n"),
    }
    for name, make in variants.items():
        record.unlink()
        make()
        with pytest.raises(SkiptuneError) as caught:
            fetch(server.url("weights.bin"))
        line = str(caught.value)
        assert "\n" not in line and "root:x" not in line and "zzzz" not in line, name
        assert f"delete {entry}" in line, (name, line)
    assert private.read_text().startswith("root:x")
