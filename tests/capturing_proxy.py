"""A real HTTP proxy on localhost that records every request body it forwards to an upstream server
(an OpenAI-compatible endpoint), to show what left ragline for a model server."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class CapturingProxy:
    """Forwards POST/GET to `upstream` (a base URL like http://127.0.0.1:port/v1) and keeps each
    request's path and raw body in `captured`. Responses are relayed whole (streams included)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.captured: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.captured.append((self.path, body.decode("utf-8", "replace")))
                upstream_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                    }
                    upstream_conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = upstream_conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for name in ("Content-Type", "Retry-After"):
                        if resp.getheader(name):
                            self.send_header(name, resp.getheader(name))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream_conn.close()

            do_POST = _forward
            do_GET = _forward

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}{parts.path}"

    def bodies(self) -> str:
        """Every captured body, joined: what to search for a value that must not have left."""
        return "\n".join(body for _path, body in self.captured)

    def __enter__(self) -> CapturingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
