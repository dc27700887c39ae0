"""A real HTTP server on localhost speaking the OpenAI /v1/embeddings protocol.

It computes vectors with the local MiniLM model, records every request, and can answer the
first requests with 429 or 500 (with a Retry-After header if given) to exercise retries, answer 413
to a request whose inputs exceed a number of characters, and hold each request until a number of
them are in flight at once (recording the most it saw). Used instead of mocking the client.
With `echo_status`, it answers every POST (embeddings or chat) with that status and a body that
echoes the request's headers, Authorization included, as careless servers and proxies do.
With `chat_replies`, it answers /v1/chat/completions with those texts in turn (the last one again
when they run out): as one JSON response with usage, or streamed as server-sent events without usage,
word by word (or, with `stream_chunk_chars`, in pieces of that many characters); with
`stream_error_after`, a stream sends that many pieces, then an error event, as a server whose model
fails mid-answer does; `finish_reason` is what its replies end with ("length": cut at max_tokens);
with `chat_gate`, each chat request waits until that event is set (an answer held in flight).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EmbeddingsServer:
    def __init__(
        self,
        embedder=None,
        fail_first: list[int] | None = None,
        dim_override: int | None = None,
        echo_status: int | None = None,
        retry_after: str | None = None,
        max_request_chars: int | None = None,
        hold_until_in_flight: int | None = None,
        chat_replies: list[str] | None = None,
        stream_chunk_chars: int | None = None,
        stream_error_after: int | None = None,
        finish_reason: str = "stop",
        chat_gate: threading.Event | None = None,
    ) -> None:
        self.finish_reason = finish_reason
        self.chat_gate = chat_gate
        self.embedder = embedder
        self.chat_replies = list(chat_replies) if chat_replies is not None else None
        self.echo_status = echo_status
        self.stream_chunk_chars = stream_chunk_chars
        self.stream_error_after = stream_error_after
        self.fail_first = list(fail_first or [])
        self.requests: list[dict[str, Any]] = []
        self.dim_override = dim_override
        self.retry_after = retry_after
        self.max_request_chars = max_request_chars
        self.hold_until_in_flight = hold_until_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self._flight = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                with server._flight:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                    server._flight.notify_all()
                    if server.hold_until_in_flight:
                        # Not a timing: a client that sends one request at a time leaves it at 1.
                        server._flight.wait_for(
                            lambda: server.in_flight >= server.hold_until_in_flight, timeout=2
                        )
                try:
                    self._answer()
                finally:
                    with server._flight:
                        server.in_flight -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "org": self.headers.get("OpenAI-Organization"),
                        **body,
                    }
                )
                if server.echo_status == 200:  # a "success" whose vectors are the request's key
                    auth = self.headers.get("Authorization")
                    self._send(200, {"object": "list", "data": [{"index": 0, "embedding": [auth]}]})
                    return
                if server.echo_status:
                    auth = self.headers.get("Authorization")
                    message = f"Incorrect API key provided. Authorization: {auth}"
                    echoed = {
                        "message": message,
                        "type": "invalid_request_error",
                        "headers": dict(self.headers),
                    }
                    self._send(server.echo_status, {"error": echoed})
                    return
                if server.fail_first:
                    headers = {"Retry-After": server.retry_after} if server.retry_after else {}
                    error = {"error": {"message": "try again", "type": "rate_limit"}}
                    self._send(server.fail_first.pop(0), error, headers)
                    return
                if self.path == "/v1/chat/completions" and server.chat_gate is not None:
                    server.chat_gate.wait()  # held until the test lets it through
                if self.path == "/v1/chat/completions" and server.chat_replies:
                    reply = (
                        server.chat_replies.pop(0) if len(server.chat_replies) > 1 else server.chat_replies[0]
                    )
                    self._chat(body, reply)
                    return
                if self.path != "/v1/embeddings":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                if server.max_request_chars and sum(map(len, texts)) > server.max_request_chars:
                    self._send(413, {"error": {"message": "request too large", "type": "invalid_request"}})
                    return
                vectors = server.embedder.embed(texts)
                if server.dim_override:
                    vectors = vectors[:, : server.dim_override]
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                    for i, v in reversed(list(enumerate(vectors)))  # out of order, as servers may be
                ]
                # Billed tokens as a provider reports them (here: words), for the cost ledger's rows.
                words = sum(len(t.split()) for t in texts)
                usage = {"prompt_tokens": words, "total_tokens": words}
                self._send(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

            def _chat(self, body: dict, reply: str) -> None:
                base = {"id": "chat-1", "created": 0, "model": body["model"]}
                if not body.get("stream"):
                    message = {"role": "assistant", "content": reply}
                    choice = {"index": 0, "message": message, "finish_reason": server.finish_reason}
                    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                    self._send(
                        200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if server.stream_chunk_chars:
                    n = server.stream_chunk_chars
                    words = [reply[i : i + n] for i in range(0, len(reply), n)]
                else:
                    words = [w + " " for w in reply.split(" ")]
                    words[-1] = words[-1][:-1]
                for i, word in enumerate(words):
                    if i == server.stream_error_after:
                        error = {"error": {"message": "the model crashed", "type": "server_error"}}
                        self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                        return
                    finish = server.finish_reason if i == len(words) - 1 else None
                    choice = {"index": 0, "delta": {"content": word}, "finish_reason": finish}
                    chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
