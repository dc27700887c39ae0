"""An earlier migration's BM25 insert trigger against the current one, on a database ragline built.

On the database of an ingest_throughput run kept with --keep-server (or $DATABASE_URL), each trial
opens a new session, installs one variant's `ragline.index_lexical_texts()` in a transaction (with
the postings' layout its migration had: the impact column and index before 0017, none from 0017 on,
made or dropped as the database needs, then a CHECKPOINT, before the clock starts), inserts --texts
served texts with ' edited' appended into the served set (new texts, known lexemes: an edit
publish), times that INSERT (the trigger included) and rolls everything back, so the database ends
as it started. "current" is the function of the newest migration that defines it (so the database
may predate that migration). Each trial ends with a VACUUM of the tables it wrote. Variants
alternate who goes first; --repeats trials each. --texts 0 re-inserts every served text into a new
set instead (a first publish). Reports each trial, the medians and current/before, in
benchmarks/results/lexical_trigger_probe-<texts>[-vs-NNNN].{json,md} (no suffix for the default,
0015).

    uv run --frozen --group bench python benchmarks/lexical_trigger_probe.py --work-dir W --texts 58
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

from benchmarks.publish_maintenance import postings_layout, trigger_functions_of  # noqa: E402
from ragline.storage.db import DATABASE_URL_ENV, embedded_server  # noqa: E402

EDIT = """
INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
SELECT 'default', md5(text || ' edited'), text || ' edited' FROM ragline.indexed_texts
WHERE chunk_set = 'default' ORDER BY text_hash LIMIT %(texts)s OFFSET %(offset)s
"""
FIRST = """
INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
SELECT 'probe', text_hash, text FROM ragline.indexed_texts WHERE chunk_set = 'default'
"""

VACUUMED = (
    "ragline.indexed_texts",
    "ragline.lexical_texts",
    "ragline.lexical_postings",
    "ragline.lexical_lexemes",
    "ragline.lexical_term_deltas",
    "ragline.lexical_stat_deltas",
)


def insert_trigger_of(migration: str) -> str | None:
    found = [f for f in trigger_functions_of(migration) if "ragline.index_lexical_texts()" in f]
    return found[0] if found else None


def latest_insert_trigger() -> tuple[str, str]:
    """The newest migration's BM25 insert trigger function (the one a migrated database runs)."""
    for path in sorted((REPO / "sql" / "migrations").glob("*.sql"), reverse=True):
        if "index_lexical_texts()" in path.read_text(encoding="utf-8"):
            function = insert_trigger_of(path.name)
            if function:
                return path.name, function
    raise SystemExit("no migration defines ragline.index_lexical_texts()")


def trial(url: str, setup: list[str], texts: int, offset: int) -> float:
    with psycopg.connect(url) as conn:
        for statement in setup:
            conn.execute(statement)
        # The setup may have built an index: its dirty pages should not be written on the clock.
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        if texts:
            conn.execute(EDIT, {"texts": texts, "offset": offset})
        else:
            conn.execute(FIRST)
        seconds = time.perf_counter() - started
        conn.rollback()
        # The rolled-back rows are dead tuples the next trial would step over: clear them.
        conn.autocommit = True
        conn.execute(f"VACUUM {', '.join(VACUUMED)}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, help="an ingest_throughput work dir; else $DATABASE_URL")
    p.add_argument("--database", default="ragline")
    p.add_argument("--texts", type=int, default=58, help="texts per edit insert; 0: a first publish")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument(
        "--before-migration",
        default="0015_lexical_insert_without_arrays.sql",
        help="the migration whose insert trigger 'before' runs",
    )
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.texts < 0:
        p.error("--repeats must be at least 1 and --texts at least 0")
    if args.work_dir:
        url = psycopg.conninfo.make_conninfo(embedded_server(args.work_dir).get_uri(), dbname=args.database)
    else:
        url = os.environ[DATABASE_URL_ENV]
    current, function = latest_insert_trigger()
    before = insert_trigger_of(args.before_migration)
    if before is None:
        p.error(f"{args.before_migration} defines no ragline.index_lexical_texts()")
    with psycopg.connect(url) as conn:
        # Each variant's trigger needs its own postings layout, made (or dropped) in the trial's
        # transaction.
        variants = {
            "before": [*postings_layout(conn, args.before_migration), before],
            "current": [*postings_layout(conn, current), function],
        }
        served = conn.execute(
            "SELECT count(*) FROM ragline.indexed_texts WHERE chunk_set = 'default'"
        ).fetchone()[0]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    names = list(variants)
    for i in range(args.repeats):
        for v in names if i % 2 == 0 else names[::-1]:
            runs[v].append(trial(url, variants[v], args.texts, i * (args.texts + 2)))
            print(f"[{i + 1}/{args.repeats}] {v}: {runs[v][-1] * 1000:.1f} ms", flush=True)
    median = {v: statistics.median(ts) for v, ts in runs.items()}
    report: dict[str, Any] = {
        "served_texts": served,
        "texts": args.texts or served,
        "kind": "edit insert into the served set" if args.texts else "first publish into a new set",
        "current_migration": current,
        "repeats": args.repeats,
        "runs_seconds": runs,
        "median_seconds": median,
        "before_migration": args.before_migration,
        "ratio_current_to_before": median["current"] / median["before"],
        "load_average_end": list(os.getloadavg()),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.before_migration.startswith("0015_") else f"-vs-{args.before_migration[:4]}"
    stem = args.results_dir / f"lexical_trigger_probe-{args.texts}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# BM25 insert trigger: {args.before_migration} ('before') against the current one ({current})",
        "",
        f"{report['kind']}: {report['texts']:,} texts into a served set of {served:,}; each trial a new "
        f"session, rolled back; {args.repeats} trials each, order alternating; load average at the end "
        f"{report['load_average_end'][0]:.2f}.",
        "",
        "| trigger | median ms | each trial, ms |",
        "|---|---|---|",
    ]
    for v, ts in runs.items():
        lines.append(f"| {v} | {median[v] * 1000:.1f} | {', '.join(f'{t * 1000:.0f}' for t in ts)} |")
    lines += ["", f"current / before (medians): **{report['ratio_current_to_before']:.3f}**", ""]
    stem.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
