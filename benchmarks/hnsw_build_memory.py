"""The serving HNSW build with PostgreSQL's default maintenance_work_mem against ragline's sized one.

On a database ragline has built (the embedded one of an ingest_throughput run kept with
--keep-server, or $DATABASE_URL), for the served model's vectors, alternating --repeats times:

- default: `CREATE INDEX CONCURRENTLY ... USING hnsw` with the session's own maintenance_work_mem,
  as a plain CREATE INDEX gets it (LlamaIndex's PGVectorStore `hnsw_kwargs`, psql, a migration);
- ragline: `build_indexes`, which asks for the graph's estimated size (index.build_memory_mb caps
  it): the serving index is dropped and built again, so the database ends as it started.

Same vectors, m = 16, ef_construction = 64. Reports seconds per build, the memory each ran with,
pgvector's notice when the graph did not fit, and ragline/default ratios, in
benchmarks/results/hnsw_build_memory.{json,md}.

    uv run --frozen --group bench python benchmarks/hnsw_build_memory.py --work-dir /path/to/work
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from ragline.config import IndexSettings  # noqa: E402
from ragline.index.search_index import (  # noqa: E402
    build_indexes,
    create_hnsw_statement,
    hnsw_graph_mb,
    hnsw_index_name,
)
from ragline.storage.db import DATABASE_URL_ENV, embedded_server  # noqa: E402

SCRATCH = "hnsw_build_memory_default"


def _default_build(
    conn: psycopg.Connection, model_id: str, dim: int, settings: IndexSettings
) -> dict[str, Any]:
    notices: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(notice)
    memory = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS ragline.{}").format(sql.Identifier(SCRATCH)))
    started = time.perf_counter()
    conn.execute(create_hnsw_statement(SCRATCH, model_id, dim, settings))
    seconds = time.perf_counter() - started
    conn.remove_notice_handler(notice)
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY ragline.{}").format(sql.Identifier(SCRATCH)))
    spilled = [n for n in notices if "no longer fits" in n]
    return {"seconds": seconds, "memory": memory, "spilled": spilled[0] if spilled else None}


def _ragline_build(
    conn: psycopg.Connection, model_id: str, dim: int, settings: IndexSettings
) -> dict[str, Any]:
    name = hnsw_index_name(model_id, settings)
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS ragline.{}").format(sql.Identifier(name)))
    stats = build_indexes(conn, model_id, dim, settings)
    assert stats.hnsw_built, "build_indexes did not build the index it was asked for"
    return {
        "seconds": stats.hnsw_seconds,
        "memory": f"{stats.hnsw_memory_mb}MB",
        "spilled": stats.hnsw_spilled,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--work-dir", type=Path, help="an ingest_throughput work dir (its pgdata); else $DATABASE_URL"
    )
    p.add_argument("--database", default="ragline", help="the database ragline built, on that server")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    if args.work_dir:
        url = embedded_server(args.work_dir).get_uri().replace("/postgres?", f"/{args.database}?")
    else:
        url = os.environ[DATABASE_URL_ENV]
    settings = IndexSettings()
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "ragline": []}
    with psycopg.connect(url, autocommit=True) as conn:
        model_id, dim, vectors = conn.execute(
            "SELECT s.model_id, s.dim, "
            "(SELECT count(*) FROM ragline.serving_vectors v WHERE v.model_id = s.model_id) "
            "FROM ragline.serving_model s"
        ).fetchone()
        for i in range(args.repeats):
            order = [("default", _default_build), ("ragline", _ragline_build)]
            for variant, build in order if i % 2 == 0 else order[::-1]:  # alternate who goes first
                result = build(conn, model_id, dim, settings)
                runs[variant].append(result)
                print(
                    f"[{i + 1}/{args.repeats}] {variant}: {result['seconds']:.2f}s with {result['memory']}"
                    f"{'; ' + result['spilled'] if result['spilled'] else ''}",
                    flush=True,
                )
        workers = conn.execute("SHOW max_parallel_maintenance_workers").fetchone()[0]
    median = {v: statistics.median(r["seconds"] for r in rs) for v, rs in runs.items()}
    report = {
        "model_id": model_id,
        "dim": dim,
        "vectors": vectors,
        "m": settings.hnsw_m,
        "ef_construction": settings.hnsw_ef_construction,
        "estimated_graph_mb": hnsw_graph_mb(vectors, dim, settings.hnsw_m),
        "max_parallel_maintenance_workers": workers,
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "runs": runs,
        "median_seconds": median,
        "ratio_ragline_to_default": median["ragline"] / median["default"],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "hnsw_build_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# HNSW build: PostgreSQL's default maintenance_work_mem vs ragline's sized build",
        "",
        f"{vectors:,} vectors of {dim} dimensions ({model_id}), m = {settings.hnsw_m}, ef_construction = "
        f"{settings.hnsw_ef_construction}; estimated graph {report['estimated_graph_mb']} MB; "
        f"max_parallel_maintenance_workers {workers}; {report['cpu_count']} cores; load average at the end "
        f"{report['load_average'][0]:.2f}.",
        "",
        "| build | run | seconds | maintenance_work_mem | graph fit in memory |",
        "|---|---:|---:|---|---|",
    ]
    for variant, rs in runs.items():
        for i, r in enumerate(rs, 1):
            fit = "yes" if r["spilled"] is None else f"no: {r['spilled']}"
            lines.append(f"| {variant} | {i} | {r['seconds']:.2f} | {r['memory']} | {fit} |")
    lines += [
        "",
        f"Median: default {median['default']:.2f} s, ragline {median['ragline']:.2f} s: "
        f"**ratio {report['ratio_ragline_to_default']:.2f}**.",
        "",
    ]
    (args.results_dir / "hnsw_build_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
