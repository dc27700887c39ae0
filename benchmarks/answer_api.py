"""Answers through the HTTP API: time to first token and total answer time, cold (the model
generates) and cached (an exact answer cache hit), over /v1/answer's server-sent events; and answer
throughput with p50/p95 under 1, 4 and 16 concurrent clients, cached and uncached reported apart.
The alternative in the same run is the same answer pipeline called in-process (Answerer), so the
ratios show what HTTP, keys, SSE and the request log add.

`ragline serve` runs in a process of its own (one worker) with a real API key; llama.cpp serves
SmolLM2-135M on loopback (one slot: concurrent uncached answers queue at the model). Corpus: the
example handbook and product docs (as benchmarks/api_throughput.py). Short answers (16 tokens) from
a small context (300 tokens) keep the run to a few minutes on 2 shared cores.

    uv run --frozen python benchmarks/answer_api.py
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CONCURRENCY = (1, 4, 16)
ANSWER = {"max_tokens": 8, "context_tokens": 150}
COLD = 4  # questions answered cold through the API, then as many in-process
CACHED_REQUESTS = 48  # per concurrency level and side


def streamed(events: Any, started: float) -> dict[str, Any]:
    """Times (ms) from `started` to the first text (a token, or a cached answer whole) and the end."""
    first = None
    final: dict[str, Any] = {}
    for kind, value in events:
        if first is None and kind in ("token", "answer"):
            first = 1000 * (time.perf_counter() - started)
        if kind == "answer":
            final = value
    return {
        "first_text_ms": first or 0.0,
        "total_ms": 1000 * (time.perf_counter() - started),
        "cached": final["cached"],
        "abstained": final["abstained"],
        "tokens": final["completion_tokens"],
    }


def sse(response: httpx.Response) -> Any:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event is not None:
            yield event, json.loads(line[6:])
            if event == "error":
                raise SystemExit(f"error event: {line}")


def summary(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Median and max over the answered rows (an abstention makes no model call)."""
    values = sorted(r[key] for r in rows if not r["abstained"])
    return {"p50": round(statistics.median(values), 1), "max": round(values[-1], 1), "n": len(values)}


def main() -> None:
    from benchmarks.api_throughput import DATA_DIR, free_port, load, prepare, start_server
    from ragline.answer.pipeline import build_answerer
    from ragline.config import load_settings
    from ragline.costs import Caller
    from ragline.index.embedding import build_embedder
    from ragline.retrieval.search import build_retriever
    from ragline.serving.keys import create_key
    from ragline.storage.db import Database, stop_embedded
    from tests.llm_server import MODEL_NAME, local_llm_server

    lines = (REPO / "examples" / "golden" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    config, url = prepare()
    # One thread: on 2 cores shared with the API, the client and other work, two llama.cpp threads
    # that must meet at every token fell to 0.3 tokens/s (measured); one thread kept its pace.
    with local_llm_server(n_threads=1) as llm_url:
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        raw["llm"] = {"model": MODEL_NAME, "base_url": llm_url, "context_window": 2048}
        raw["answer"] = ANSWER
        config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        settings = load_settings(config)
        with Database(url, max_size=1) as db, db.connection() as conn:
            key = create_key(conn, "bench").key
        port = free_port()
        server = start_server(config, port, 1)
        db = Database(url, max_size=settings.serve.pool_size)
        retriever = build_retriever(settings, db, build_embedder(settings.embedding), log_queries=False)
        answerer = build_answerer(settings, db, retriever=retriever)
        caller = Caller("api")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        try:
            http = httpx.Client(base_url=base, headers=headers, timeout=300)

            def api_stream(q: str) -> dict[str, Any]:
                body = {"question": q, "stream": True, "log": False}
                started = time.perf_counter()
                with http.stream("POST", "/v1/answer", json=body) as r:
                    r.raise_for_status()
                    return streamed(sse(r), started)

            def local_stream(q: str) -> dict[str, Any]:
                def events() -> Any:
                    for kind, value in answerer.stream(q, caller=caller, log=False):
                        yield kind, (value.as_dict() if kind == "answer" else value)

                return streamed(events(), time.perf_counter())

            # Warm both sides (model sessions, prepared statements) on a question not measured.
            api_stream(questions[-1])
            local_stream(questions[-1])
            cold_api = [api_stream(q) for q in questions[:COLD]]
            cold_local = [local_stream(q) for q in questions[COLD : 2 * COLD]]
            cached_api = [api_stream(q) for q in questions[:COLD]]
            cached_local = [local_stream(q) for q in questions[:COLD]]
            assert all(not r["cached"] for r in cold_api + cold_local)
            assert all(r["cached"] for r in cached_api + cached_local)
            latency = {
                side: {
                    "first_text_ms": summary(rows, "first_text_ms"),
                    "total_ms": summary(rows, "total_ms"),
                    "abstained": sum(r["abstained"] for r in rows),
                }
                for side, rows in (
                    ("api_cold", cold_api),
                    ("in_process_cold", cold_local),
                    ("api_cached", cached_api),
                    ("in_process_cached", cached_local),
                )
            }
            print(json.dumps(latency), flush=True)

            clients: dict[int, httpx.Client] = {}

            def api_answer(q: str) -> None:
                me = threading.get_ident()
                if me not in clients:
                    clients[me] = httpx.Client(base_url=base, headers=headers, timeout=600)
                clients[me].post("/v1/answer", json={"question": q, "log": False}).raise_for_status()

            def local_answer(q: str) -> None:
                answerer.answer(q, caller=caller, log=False)

            throughput = []
            cached_pool = questions[:COLD]
            fresh = iter(questions[2 * COLD : -1])  # each uncached request a question never asked
            for c in CONCURRENCY:
                cached = {
                    "api": load(api_answer, cached_pool, c, CACHED_REQUESTS),
                    "in_process": load(local_answer, cached_pool, c, CACHED_REQUESTS),
                }
                n = max(c, 4)
                uncached_qs = [next(fresh) for _ in range(n)]
                uncached = load(api_answer, uncached_qs, c, n)
                row = {
                    "clients": c,
                    "cached": {**cached, "throughput_ratio": _ratio(cached)},
                    "uncached_api": uncached,
                }
                throughput.append(row)
                print(json.dumps(row), flush=True)
            with psycopg.connect(url) as conn:
                logged = conn.execute(
                    "SELECT count(*) FILTER (WHERE cached), count(*) FILTER (WHERE NOT cached), "
                    "sum(prompt_tokens + completion_tokens), count(*) FILTER (WHERE models = '{}') "
                    "FROM ragline.api_requests "
                    "WHERE route = '/v1/answer' AND status = 200"
                ).fetchone()
        finally:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(30)
            db.close()
            stop_embedded(DATA_DIR)
    report = {
        "what": "/v1/answer over HTTP (ragline serve, own process) vs the Answerer in-process, same run",
        "model": f"{MODEL_NAME} (llama.cpp, 1 thread, one slot)",
        "answer": ANSWER,
        "cpus": len(os.sched_getaffinity(0)),
        "latency": latency,
        "throughput": throughput,
        "api_rows": {
            "cached": logged[0],
            "uncached": logged[1],
            "tokens": logged[2],
            "abstained_before_the_model": logged[3],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "answer_api.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "answer_api.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def _ratio(sides: dict[str, dict[str, float]]) -> float:
    return round(sides["api"]["per_second"] / sides["in_process"]["per_second"], 3)


def markdown(report: dict[str, Any]) -> str:
    lat = report["latency"]
    out = [
        "# Answers through the API: latency and throughput (same run as the in-process pipeline)",
        "",
        f"{report['model']}; answers of at most {report['answer']['max_tokens']} tokens from "
        f"{report['answer']['context_tokens']} context tokens; {report['cpus']} CPUs shared with other work.",
        "",
        f"Streamed /v1/answer, {COLD} questions per row, median (max) ms:",
        "",
        "| | first text | total |",
        "|---|---|---|",
    ]
    for side in ("api_cold", "in_process_cold", "api_cached", "in_process_cached"):
        f, t = lat[side]["first_text_ms"], lat[side]["total_ms"]
        name = f"{side.replace('_', ' ')} ({f['n']} answered)"
        out.append(f"| {name} | {f['p50']} ({f['max']}) | {t['p50']} ({t['max']}) |")
    out += [
        "",
        "Cold rows answer different questions (a repeat would hit the cache or llama.cpp's prompt "
        "cache); cached rows answer the same ones. First text: the first token event, or the whole "
        "answer for a cache hit.",
        "",
        "| clients | cached API req/s | cached in-process req/s | ratio | cached API p50 / p95 ms | "
        "uncached API req/s | uncached API p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        a, d, u = r["cached"]["api"], r["cached"]["in_process"], r["uncached_api"]
        out.append(
            f"| {r['clients']} | {a['per_second']} | {d['per_second']} | {r['cached']['throughput_ratio']} | "
            f"{a['p50_ms']} / {a['p95_ms']} | {u['per_second']} ({u['requests']} answers) | "
            f"{u['p50_ms']} / {u['p95_ms']} |"
        )
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
