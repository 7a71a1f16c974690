"""An HTTPS server on loopback that an attacker controls: it records every request (and the
Authorization header it carried) and answers with a fixed status and body."""

from __future__ import annotations

import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubesim.server import make_tls_files


class Listener:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.status = 500
        self.reason = "Internal Server Error"
        self.body = b"listener-body-secret-7731"
        self.content_type = "text/plain"
        folder = Path(tempfile.mkdtemp(prefix="warden-listener-"))
        ca_pem, cert, key = make_tls_files(folder)
        self.ca_pem = ca_pem.decode()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                listener.seen.append((self.command, self.path, dict(self.headers.items())))
                self.send_response(listener.status, listener.reason)
                self.send_header("Content-Type", listener.content_type)
                self.send_header("Content-Length", str(len(listener.body)))
                self.end_headers()
                self.wfile.write(listener.body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorizations(self) -> list[str]:
        return [
            value
            for _, _, headers in self.seen
            for name, value in headers.items()
            if name.lower() == "authorization"
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()
