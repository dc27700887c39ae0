"""Real local servers that receive alerts: an HTTP server recording JSON POSTs per path (a Slack
webhook and a generic one), and a minimal SMTP server (RFC 5321: EHLO, MAIL, RCPT, DATA) recording
each mail. Both listen on 127.0.0.1 on a free port, in a thread, for `with`."""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Records {"path", "body"} of every POST; answers the first `fail_first` requests with 500, and
    every body containing `reject` with 400."""

    def __init__(self, fail_first: int = 0, reject: str | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.reject = reject
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                if receiver.reject is not None and receiver.reject.encode("utf-8") in body:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.posts.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [p["body"] for p in self.posts if p["path"] == path]

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """Records each delivered mail as an email.message.EmailMessage (with .envelope_to)."""

    def __init__(self) -> None:
        self.mails: list[Any] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode("ascii") + b"\r\n")

            def handle(self) -> None:
                self.reply("220 localhost ragline test SMTP")
                recipients: list[str] = []
                while line := self.rfile.readline():
                    command = line.decode("utf-8", "replace").strip()
                    verb = command[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 localhost")
                    elif verb == "MAIL":
                        recipients = []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = bytearray()
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        mail = email.message_from_bytes(bytes(data), policy=email.policy.default)
                        mail.envelope_to = recipients
                        receiver.mails.append(mail)
                        self.reply("250 OK queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> SmtpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
