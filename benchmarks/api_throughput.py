"""The HTTP API's overhead: /v1/search throughput and p50/p95 latency under 1, 4 and 16 concurrent
clients on loopback, against `Retriever.search` called in-process with the same concurrency, the
same queries and the same settings, in one run (the ratio survives a noisy machine).

The API runs as `ragline serve` in a process of its own (uvicorn, one worker), with a real API key:
each request pays HTTP, JSON, the key lookup, the rate/budget check and its api_requests row.
Neither side writes the query log. Corpus: the example handbook and product docs, materialized
once into a fresh database of an embedded server under .ragline/bench-api.

    uv run --frozen python benchmarks/api_throughput.py [--requests 120] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import yaml
from psycopg import sql

from ragline.config import load_settings
from ragline.index.embedding import build_embedder
from ragline.retrieval.search import build_retriever
from ragline.serving.keys import create_key
from ragline.storage.db import Database, database_url, migrate, stop_embedded

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".ragline" / "bench-api"
RESULTS = REPO / "benchmarks" / "results"
DATABASE = "bench_api"
CONCURRENCY = (1, 4, 16)


def questions() -> list[str]:
    lines = (REPO / "examples" / "golden" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def prepare() -> tuple[Path, str]:
    """A fresh database holding the materialized example corpus; returns (ragline.yaml, its URL)."""
    server = database_url(DATA_DIR)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = server.replace("/ragline?", f"/{DATABASE}?")
    migrate(url)
    project = DATA_DIR / "project"
    shutil.rmtree(project, ignore_errors=True)
    sources = []
    for name in ("handbook", "product_docs"):
        shutil.copytree(REPO / "examples" / "corpus" / name, project / "corpus" / name)
        sources.append({"name": name, "root": f"corpus/{name}", "chunking": {"strategy": "markdown"}})
    config = {"data_dir": ".ragline", "sources": sources, "retrieval": {"log_queries": False}}
    path = project / "ragline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    os.environ["DATABASE_URL"] = url
    import dagster as dg

    from orchestration.commands import run_pipeline

    settings = load_settings(path)
    results = run_pipeline(
        settings, [s.name for s in settings.sources], dg.DagsterInstance.ephemeral(), quality=False
    )
    if not all(r.success for _, r in results):
        raise SystemExit("materializing the example corpus failed")
    return path, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "ragline.cli", "--config", str(config), "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], start_new_session=True, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"ragline serve exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise SystemExit("ragline serve did not become ready within 120 s")


def load(call: Callable[[str], None], queries: list[str], clients: int, total: int) -> dict[str, float]:
    """`total` calls spread over `clients` threads (bounded loops); throughput and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients

    def client(offset: int) -> None:
        mine = []
        for i in range(per_client):
            t = time.perf_counter()
            call(queries[(offset + i) % len(queries)])
            mine.append(1000 * (time.perf_counter() - t))
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c * 7,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120, help="per concurrency level and side")
    parser.add_argument("--workers", type=int, default=1, help="of ragline serve")
    args = parser.parse_args()
    config, url = prepare()
    settings = load_settings(config)
    with Database(url, max_size=1) as db, db.connection() as conn:
        key = create_key(conn, "bench").key
    queries = questions()
    port = free_port()
    server = start_server(config, port, args.workers)
    db = Database(url, max_size=settings.serve.pool_size)
    retriever = build_retriever(settings, db, build_embedder(settings.embedding))
    rows = []
    try:
        clients: dict[int, httpx.Client] = {}

        def over_http(question: str) -> None:
            me = threading.get_ident()
            if me not in clients:
                clients[me] = httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
                )
            response = clients[me].post("/v1/search", json={"query": question, "k": 10, "log": False})
            response.raise_for_status()

        def in_process(question: str) -> None:
            retriever.search(question, k=10, log=False)

        for warm in (over_http, in_process):
            for q in queries[:5]:
                warm(q)
        for c in CONCURRENCY:
            api = load(over_http, queries, c, args.requests)
            direct = load(in_process, queries, c, args.requests)
            rows.append(
                {
                    "clients": c,
                    "api": api,
                    "in_process": direct,
                    "throughput_ratio": round(api["per_second"] / direct["per_second"], 3),
                    "p50_overhead_ms": round(api["p50_ms"] - direct["p50_ms"], 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        with psycopg.connect(url) as conn:
            logged = conn.execute("SELECT count(*) FROM ragline.api_requests WHERE status = 200").fetchone()[
                0
            ]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)
        db.close()
        stop_embedded(DATA_DIR)
    report = {
        "what": "/v1/search over HTTP (ragline serve, separate process) vs Retriever.search in-process",
        "strategy": settings.retrieval.strategy,
        "k": 10,
        "server_workers": args.workers,
        "cpus": len(os.sched_getaffinity(0)),
        "requests_logged": logged,
        "levels": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "api_throughput" if args.workers == 1 else f"api_throughput_workers{args.workers}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# /v1/search throughput: the API vs the retriever in-process (same run)",
        "",
        f"Strategy {report['strategy']}, k=10, {args.requests} requests per level and side, "
        f"server workers {args.workers}, {report['cpus']} CPUs shared with other work.",
        "",
        "| clients | API req/s | in-process req/s | ratio | API p50 / p95 ms | in-process p50 / p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, d = r["api"], r["in_process"]
        lines.append(
            f"| {r['clients']} | {a['per_second']} | {d['per_second']} | {r['throughput_ratio']} | "
            f"{a['p50_ms']} / {a['p95_ms']} | {d['p50_ms']} / {d['p95_ms']} |"
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
