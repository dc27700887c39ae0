"""Publish's BM25 maintenance before and after a migration's trigger functions, in one run.

For each variant, a fresh database on one embedded PostgreSQL (benchmarks/.work/publish/pgdata): the
seeded synthetic corpus of benchmarks/ingest_throughput.py, ragline's full build, a no-op rerun and
a rerun after editing one sentence in 1% of the documents (the stand-in hash model: the model is not
what this measures). "before" puts back the BM25 trigger functions of the migration
--before-migration (default 0004's two, measured against 0014; 0015's insert function measures 0016;
0016's measures 0017, with the impact column and index 0017 dropped put back) and
unindex_generation_texts.sql as it was at --before-commit; "after" keeps the current ones. With
autovacuum off on ragline's tables (default; --autovacuum keeps it), every statement is planned
without statistics of the rows the build just loaded, as a publish that runs before autovacuum gets
to them: the case that made edit reruns take minutes now and then. Reports publish_source's seconds
per pass and after/before ratios, in
benchmarks/results/ingest_build/publish-maintenance-<docs>-docs/.

    uv run --frozen python benchmarks/publish_maintenance.py --docs 500
    uv run --frozen python benchmarks/publish_maintenance.py --docs 5000 \
        --before-migration 0015_lexical_insert_without_arrays.sql --before-commit HEAD
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from benchmarks.ingest_throughput import (  # noqa: E402
    CHUNK_OVERLAP,
    CHUNK_SIZE,
    EDIT_FRACTION,
    SOURCE_NAME,
    StandInModel,
    edit_corpus,
    generate_corpus,
    log,
    ragline_pass,
)
from ragline.config import ChunkingSettings, IndexSettings, SourceSettings  # noqa: E402
from ragline.index import publishing  # noqa: E402
from ragline.storage.db import (  # noqa: E402
    DATABASE_URL_ENV,
    embedded_server,
    migrate,
    query,
    sql_dir,
    stop_embedded,
)

VARIANTS = ("before", "after")
UNINDEX = "sql/queries/unindex_generation_texts.sql"
_FUNCTION = re.compile(
    r"CREATE (?:OR REPLACE )?FUNCTION (ragline\.(?:index|unindex)_lexical_texts\(\).*?\n\$\$;)", re.S
)


def trigger_functions_of(migration: str) -> list[str]:
    """A migration's BM25 trigger functions, as CREATE OR REPLACE statements."""
    text = (sql_dir() / "migrations" / migration).read_text(encoding="utf-8")
    found = [f"CREATE OR REPLACE FUNCTION {body}" for body in _FUNCTION.findall(text)]
    assert found, f"no BM25 trigger function in {migration}"
    return found


def impact_order_of_0004() -> list[str]:
    """What migration 0017 dropped, as 0004 made it: the impact function, the postings' impact
    column (nullable: rows already there have none) and the index by (set, term, impact desc, text).
    A "before" variant older than 0017 puts them back so that its trigger functions run as they did."""
    text = (sql_dir() / "migrations" / "0004_bm25_impact_postings.sql").read_text(encoding="utf-8")
    function = re.search(r"CREATE FUNCTION ragline\.bm25_impact\(.*?\$\$;", text, re.S)
    index = re.search(r"CREATE INDEX lexical_postings_by_impact\s.*?;", text, re.S)
    assert function and index, "0004's impact function or index not found"
    return [
        function.group(0),
        "ALTER TABLE ragline.lexical_postings ADD COLUMN impact real",
        index.group(0),
    ]


_IMPACT_COLUMN = """
SELECT 1 FROM pg_attribute
WHERE attrelid = 'ragline.lexical_postings'::regclass AND attname = 'impact' AND NOT attisdropped
"""


def postings_layout(conn: psycopg.Connection, migration: str) -> list[str]:
    """Statements that give the database the postings layout `migration`'s trigger functions write:
    the impact column and index before 0017 (put back if the database has none), none from 0017 on
    (dropped if it has them)."""
    has_impact = conn.execute(_IMPACT_COLUMN).fetchone() is not None
    if migration < "0017" and not has_impact:
        return impact_order_of_0004()
    if migration >= "0017" and has_impact:
        return [
            "DROP INDEX ragline.lexical_postings_by_impact",
            "ALTER TABLE ragline.lexical_postings DROP COLUMN impact",
        ]
    return []


def _git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=REPO, check=True, capture_output=True, text=True).stdout


def old_unindex(commit: str) -> str:
    """unindex_generation_texts.sql as it was at commit."""
    return _git("show", f"{commit}:{UNINDEX}")


def variant_run(variant: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Full build, no-op rerun and edit rerun on a fresh corpus and database; publish seconds each."""
    corpus = work / f"corpus-{variant}"
    shutil.rmtree(corpus, ignore_errors=True)
    docs, seed = args.docs, args.seed
    generate_corpus(corpus, docs, seed)
    admin = embedded_server(work).get_uri()
    name = f"publish_{variant}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = embedded_server(work).get_uri(database=name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        if not args.autovacuum:
            for (table,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'ragline'"
            ).fetchall():
                conn.execute(f'ALTER TABLE ragline."{table}" SET (autovacuum_enabled = off)')
        if variant == "before":
            layout = postings_layout(conn, args.before_migration)
            for statement in [*layout, *trigger_functions_of(args.before_migration)]:
                conn.execute(statement)
    old = old_unindex(args.before_commit)
    publishing.query = (
        (lambda name: old if name == "unindex_generation_texts" else query(name))
        if variant == "before"
        else query
    )
    model = StandInModel()
    chunking = ChunkingSettings(strategy="sentence", chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    source = SourceSettings(name=SOURCE_NAME, root=corpus, glob="**/*.md", chunking=chunking)
    index = IndexSettings()
    full, db = ragline_pass(f"{variant} full build", url, None, source, model, index)
    noop, db = ragline_pass(f"{variant} no-op rerun", url, db, source, model, index)
    edited = edit_corpus(corpus, EDIT_FRACTION, seed)
    edit, db = ragline_pass(f"{variant} edit rerun", url, db, source, model, index)
    with db.connection() as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ragline.lexical_texts), "
            "(SELECT count(*) FROM ragline.lexical_postings)"
        ).fetchone()
    db.close()
    shutil.rmtree(corpus, ignore_errors=True)
    return {
        "publish_seconds": {
            "full_build": full["stage_seconds"]["publish_source"],
            "noop_rerun": noop["stage_seconds"]["publish_source"],
            "edit_rerun": edit["stage_seconds"]["publish_source"],
        },
        "wall_seconds": {"full_build": full["wall_seconds"], "edit_rerun": edit["wall_seconds"]},
        "edited_documents": len(edited),
        "current_chunks": full["current_chunks"],
        "lexical_texts": counts[0],
        "lexical_postings": counts[1],
    }


def markdown(r: dict[str, Any]) -> str:
    runs = r["variants"]
    last = runs["after"][-1]
    lines = [
        f"# Publish's BM25 maintenance, before = {r['before_migration']}'s trigger functions "
        f"({r['documents']} documents)",
        "",
        f"One run of {r['rounds']} round(s), the variants' order alternating by round, same corpus "
        f"(seed {r['seed']}), stand-in hash model, autovacuum {'on' if r['autovacuum'] else 'off'}; "
        f"before = {r['before_migration']}'s trigger functions and {r['before_commit']}'s "
        f"unindex_generation_texts.sql; {last['lexical_texts']} lexical texts, "
        f"{last['lexical_postings']} postings after the edit rerun; {last['edited_documents']} "
        "documents edited. A no-op rerun returns before any text is indexed: its column shows the "
        "noise.",
        "",
        "| publish_source | before (s), each round | after (s), each round | after / before (medians) |",
        "|---|---|---|---|",
    ]
    for key in ("full_build", "noop_rerun", "edit_rerun"):
        before = [run["publish_seconds"][key] for run in runs["before"]]
        after = [run["publish_seconds"][key] for run in runs["after"]]
        ratio = r["ratios_after_over_before"].get(key, float("nan"))
        lines.append(
            f"| {key.replace('_', ' ')} | {', '.join(f'{v:.2f}' for v in before)} | "
            f"{', '.join(f'{v:.2f}' for v in after)} | {ratio:.3f} |"
        )
    lines += ["", f"Machine load at the end: {r['load_average_end']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=500)
    p.add_argument("--seed", type=int, default=20261128)
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work" / "publish")
    p.add_argument(
        "--before-commit",
        default=None,
        help="where the 'before' unindex_generation_texts.sql comes from "
        "(default: 2da75f5 against 0004's functions, else HEAD)",
    )
    p.add_argument("--rounds", type=int, default=1, help="rounds of both variants, order alternating")
    p.add_argument(
        "--before-migration",
        default="0004_bm25_impact_postings.sql",
        help="the migration whose BM25 trigger functions 'before' runs",
    )
    p.add_argument("--autovacuum", action="store_true", help="leave autovacuum on (timing-dependent plans)")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results" / "ingest_build")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.before_commit is None:
        args.before_commit = "2da75f5" if args.before_migration.startswith("0004_") else "HEAD"
    if os.environ.get(DATABASE_URL_ENV):
        p.error(f"unset {DATABASE_URL_ENV}: this benchmark uses its own embedded Postgres in --work-dir")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        variants: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            for v in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                variants[v].append(variant_run(v, work, args))
    finally:
        stop_embedded(work)
    medians = {
        v: {
            k: statistics.median(run["publish_seconds"][k] for run in runs)
            for k in runs[0]["publish_seconds"]
        }
        for v, runs in variants.items()
    }
    result = {
        "benchmark": "publish_maintenance",
        "documents": args.docs,
        "seed": args.seed,
        "autovacuum": args.autovacuum,
        "before_commit": args.before_commit,
        "after_commit": _git("rev-parse", "HEAD").strip(),
        "after_tree_dirty": bool(_git("status", "--porcelain", "--", "sql", "ragline")),
        "before_migration": args.before_migration,
        "rounds": args.rounds,
        "variants": variants,
        "ratios_after_over_before": {
            k: medians["after"][k] / before for k, before in medians["before"].items() if before
        },
        "load_average_end": list(os.getloadavg()),
        "total_run_seconds": time.perf_counter() - started,
    }
    suffix = "" if args.before_migration.startswith("0004_") else f"-vs-{args.before_migration[:4]}"
    out = args.results_dir / f"publish-maintenance-{args.docs}-docs{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "publish_maintenance.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "publish_maintenance.md").write_text(markdown(result), encoding="utf-8")
    log(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
