"""Lexical BM25 latency on real text, before and after the integer-id postings (issue 9), in one
run on one server: the 0003 statement (aggregate over every posting of the query's lexemes, on the
0003 tables rebuilt in a scratch schema from the same postings), the exhaustive reference on the
current tables, and the one statement ragline serves (ExhaustiveBm25). Also checks that every top-k
equals the exhaustive one. (The threshold search this benchmark also timed until migration 0017
removed it is in benchmarks/results/bm25_latency.json of that time.)

Corpus: docstrings and package descriptions of the installed packages (text no one here wrote),
cut into ~800-character chunks; queries are 5-15 consecutive words of held-out docstrings.

    uv run --frozen python benchmarks/bm25_latency.py [--chunks 25000] [--queries 300]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import re
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ragline.retrieval.bm25 import ExhaustiveBm25, exhaustive_top_texts
from ragline.storage.db import database_url, migrate, stop_embedded

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".ragline" / "bench-bm25"
RESULTS = REPO / "benchmarks" / "results"
SITE = Path(sysconfig.get_paths()["purelib"])


def docstrings() -> list[str]:
    """Module, class and function docstrings of the installed packages, file by file, in path order."""
    out: list[str] = []
    for path in sorted(SITE.rglob("*.py")):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 8:
                    out.append(doc)
    return out


def descriptions() -> list[str]:
    return [
        p.read_text(encoding="utf-8", errors="replace").partition("\n\n")[2]
        for p in sorted(SITE.glob("*.dist-info/METADATA"))
    ]


def chunks_of(texts: list[str], size: int = 800) -> list[str]:
    out, chunk = [], ""
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            chunk = f"{chunk}\n\n{paragraph}" if chunk else paragraph
            if len(chunk) >= size:
                out.append(chunk[: 4 * size].replace("\x00", ""))
                chunk = ""
    return out


def corpus(n_chunks: int, n_queries: int, seed: int) -> tuple[list[str], list[str]]:
    cache = DATA_DIR / f"corpus-{n_chunks}-{n_queries}-{seed}.json"
    if cache.is_file():  # parsing every installed module takes minutes
        saved = json.loads(cache.read_text())
        return saved["chunks"], saved["queries"]
    docs = docstrings()
    rng = random.Random(seed)
    held = set(rng.sample(range(len(docs)), k=min(len(docs) // 10, 20 * n_queries)))
    chunks = chunks_of(descriptions() + [d for i, d in enumerate(docs) if i not in held])
    rng.shuffle(chunks)
    queries = []
    for i in sorted(held):
        words = re.findall(r"[A-Za-z][A-Za-z0-9_'-]+", docs[i])
        if len(words) >= 15:
            size = rng.randint(5, 15)
            start = rng.randint(0, len(words) - size)
            queries.append(" ".join(words[start : start + size]))
    rng.shuffle(queries)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"chunks": chunks[:n_chunks], "queries": queries[:n_queries]}))
    return chunks[:n_chunks], queries[:n_queries]


# The 0003 schema and statement, rebuilt beside the new tables from the same postings.
BEFORE_SCHEMA = """
DROP SCHEMA IF EXISTS before0003 CASCADE;
CREATE SCHEMA before0003;
CREATE TABLE before0003.lexical_postings AS
SELECT p.chunk_set, l.lexeme, x.text_hash, p.tf, p.doc_length
FROM ragline.lexical_postings p JOIN ragline.lexical_lexemes l USING (term_id)
JOIN ragline.lexical_texts x USING (text_id);
ALTER TABLE before0003.lexical_postings
    ADD PRIMARY KEY (chunk_set, lexeme, text_hash) INCLUDE (tf, doc_length);
CREATE TABLE before0003.lexical_terms AS SELECT chunk_set, lexeme, df FROM ragline.lexical_terms;
ALTER TABLE before0003.lexical_terms ADD PRIMARY KEY (chunk_set, lexeme);
CREATE TABLE before0003.lexical_stats AS SELECT chunk_set, texts, total_length FROM ragline.lexical_stats;
"""


def before_statement() -> str:
    """search_lexical.sql as 0003 shipped it, up to its scored texts, reading the scratch schema."""
    # A copy of sql/queries/search_lexical.sql at 9fd5307 (a shallow clone has no history to show).
    text = (REPO / "benchmarks" / "sql" / "search_lexical_0003.sql").read_text()
    head = text[: text.index("\nSELECT c.*")]
    return head.replace("ragline.lexical_", "before0003.lexical_") + "\nSELECT text_hash, score FROM scored"


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=25_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--measure", type=int, default=None, help="time only the first N queries")
    args = parser.parse_args()

    t0 = time.perf_counter()
    chunks, queries = corpus(args.chunks, args.queries, args.seed)
    chunks = list({hashlib.sha256(c.encode()).hexdigest(): c for c in chunks}.values())  # a text once
    queries = queries[: args.measure]
    print(f"corpus: {len(chunks)} chunks, {len(queries)} queries ({time.perf_counter() - t0:.1f} s)")
    url = database_url(DATA_DIR)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            loaded = conn.execute("SELECT count(*) FROM ragline.lexical_texts").fetchone()[0]
            t0 = time.perf_counter()
            if loaded != len(chunks):  # a rerun reuses the loaded corpus
                # TRUNCATE fires no delete trigger: clear the derived tables too.
                conn.execute("TRUNCATE ragline.indexed_texts")
                conn.execute(
                    "TRUNCATE ragline.lexical_postings, ragline.lexical_texts, ragline.lexical_lexemes, "
                    "ragline.lexical_term_deltas, ragline.lexical_stat_deltas"
                )
                for i in range(0, len(chunks), 2000):
                    with (
                        conn.transaction(),
                        conn.cursor() as cur,
                        cur.copy(
                            "COPY ragline.indexed_texts (chunk_set, text_hash, text) FROM STDIN"
                        ) as copy,
                    ):
                        for text in chunks[i : i + 2000]:
                            copy.write_row(("default", hashlib.sha256(text.encode()).hexdigest(), text))
            load_s = time.perf_counter() - t0
            conn.execute("SELECT ragline.compact_lexical_deltas()")
            conn.execute(BEFORE_SCHEMA)
            for table in (
                "ragline.lexical_postings",
                "ragline.lexical_texts",
                "ragline.lexical_lexemes",
                "ragline.lexical_term_deltas",
                "ragline.lexical_stat_deltas",
                "before0003.lexical_postings",
                "before0003.lexical_terms",
                "before0003.lexical_stats",
            ):
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(table)))
            sizes = conn.execute(
                "SELECT (SELECT count(*) FROM ragline.lexical_texts), "
                "(SELECT count(*) FROM ragline.lexical_postings), "
                "(SELECT count(*) FROM ragline.lexical_lexemes), "
                "pg_total_relation_size('ragline.lexical_postings'), "
                "pg_total_relation_size('before0003.lexical_postings')"
            ).fetchone()
            print(f"indexed {sizes[0]} texts, {sizes[1]} postings, {sizes[2]} lexemes in {load_s:.1f} s")
            before = before_statement()
            served = ExhaustiveBm25()
            runs: dict[str, list[float]] = {}
            agree = {"served_scan10": 0, "served_scan50": 0}
            matching: list[int] = []
            for q in queries:
                for scan in (10, 50):
                    p = {"query": q, "chunk_set": "default", "k1": 1.2, "b": 0.75, "scan": scan, "limit": 10}
                    # Interleaved, so the machine's load falls on every method alike.
                    t = time.perf_counter()
                    conn.execute(before, p, prepare=True).fetchall()
                    runs.setdefault(f"before_0003_scan{scan}", []).append(1000 * (time.perf_counter() - t))
                    t = time.perf_counter()
                    want = exhaustive_top_texts(conn, "default", q, scan, k1=1.2, b=0.75)
                    runs.setdefault(f"exhaustive_scan{scan}", []).append(1000 * (time.perf_counter() - t))
                    t = time.perf_counter()
                    fast = served.top_texts(conn, "default", q, scan, k1=1.2, b=0.75)
                    runs.setdefault(f"served_scan{scan}", []).append(1000 * (time.perf_counter() - t))
                    same = [(x.text_hash, round(x.score, 9)) for x in fast.texts] == [
                        (x.text_hash, round(x.score, 9)) for x in want.texts
                    ]
                    agree[f"served_scan{scan}"] += same
                matching.append(len(exhaustive_top_texts(conn, "default", q, None, k1=1.2, b=0.75).texts))
            plan_q = queries[0]
            plans = {"served_top_texts": explain(conn, "bm25_top_texts", plan_q)}
            conn.execute("DROP SCHEMA before0003 CASCADE")
    finally:
        stop_embedded(DATA_DIR)
    report = {
        "chunks": sizes[0],
        "postings": sizes[1],
        "lexemes": sizes[2],
        "postings_bytes": sizes[3],
        "postings_bytes_0003": sizes[4],
        "queries": len(queries),
        "load_seconds": round(load_s, 1),
        "latency": {name: percentiles(ms) for name, ms in runs.items()},
        "p50_ratio_served_over_before": {
            f"scan{scan}": round(
                statistics.median(runs[f"served_scan{scan}"])
                / statistics.median(runs[f"before_0003_scan{scan}"]),
                2,
            )
            for scan in (10, 50)
        },
        "equal_to_exhaustive": {k: f"{v}/{len(queries)}" for k, v in agree.items()},
        "texts_matching_a_query_term_median": statistics.median(matching),
        "plans": plans,
        "python": sys.version.split()[0],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bm25_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "plans"}, indent=2))


def explain(conn: psycopg.Connection, name: str, q: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a named BM25 statement for one real query (top 10)."""
    from ragline.storage.db import query

    params = {"query": q, "chunk_set": "default", "k1": 1.2, "b": 0.75, "scan": 10}
    plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + sql.SQL(query(name)), params).fetchall()
    return "\n".join(r[0] for r in plan)


if __name__ == "__main__":
    main()
