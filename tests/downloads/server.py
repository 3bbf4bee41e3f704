"""A file server on 127.0.0.1 (a free port) for download tests: serves a folder, can stall.

It runs ``http.server`` in a thread, serving the files of one folder. A file named in
``stall`` is sent with its full Content-Length but only its first half, and the
connection then hangs until the server stops: a client killed in that state is a download
killed half-way. A name in ``answers`` gets that body with those headers (a page sent as
``application/octet-stream``, a gzip-encoded body), whole per HTTP. Nothing here reaches
beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class FileServer:
    """The running server: ``url(name)``, the files' ``folder``, ``stall``, ``answers``, and
    the ``requests`` with their ``request_headers``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stall: set[str] = set()
        self.answers: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: list[str] = []
        self.request_headers: list[dict[str, str]] = []
        self.released = threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass                               # the test's output stays readable

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append(name)
                server.request_headers.append(dict(self.headers.items()))
                if name in server.answers:
                    body, headers = server.answers[name]
                    self.send_response(200)
                    for key, value in {"Content-Length": str(len(body)), **headers}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if name not in server.stall:
                    super().do_GET()
                    return
                data = (folder / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                server.released.wait(timeout=60)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._stopped = False

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (again: nothing); a stalled answer is released first."""
        if self._stopped:
            return
        self._stopped = True
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[FileServer]:
    """A :class:`FileServer` on ``folder`` for the block; stopped after it (if still running)."""
    server = FileServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
