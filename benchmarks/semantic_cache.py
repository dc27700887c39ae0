"""The semantic answer cache's hit rate on paraphrases and false-hit rate on non-paraphrases.

Materializes the demo (ragline.yaml over examples/) in an embedded PostgreSQL of its own, embeds
both questions of every pair in examples/cache/question_pairs.jsonl with the local model, retrieves
each question's context, and asks the real AnswerCache (ragline/answer/cache.py) for each threshold
from 0.85 to 0.99: store question a, look up question b. Each pair gets a model name of its own so
pairs never hit each other's entries. "any context": every pair shares one context key (vector
similarity alone); "same context": each question's own top-k retrieved (chunk_id, text_hash) list,
as answer() builds it.

    uv run --frozen python benchmarks/semantic_cache.py            # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragline.answer.cache import AnswerCache, SemanticKey, context_key, exact_key, params_hash  # noqa: E402
from ragline.config import CacheSettings, load_settings  # noqa: E402
from ragline.storage.db import Database, database_url, migrate, stop_embedded  # noqa: E402

PAIRS = REPO / "examples" / "cache" / "question_pairs.jsonl"
THRESHOLDS = [round(0.85 + 0.01 * i, 2) for i in range(15)]
CONTEXT_SIZES = (3, 5, 10)
PARAMS = {"max_tokens": 512, "temperature": 0.0}


def wilson_upper(hits: int, n: int, z: float = 1.96) -> float:
    """The upper end of the 95% Wilson interval of a rate hits/n."""
    if n == 0:
        return 1.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def materialize_demo(work: Path) -> tuple[Any, str]:
    """The demo's settings and the URL of a database with it published (a no-op when it already is)."""
    import dagster as dg

    from orchestration.commands import run_pipeline

    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("RAGLINE_DATABASE", None)
    url = database_url(work)
    migrate(url)
    os.environ["DATABASE_URL"] = url
    settings = load_settings(REPO / "ragline.yaml")
    names = [s.name for s in settings.sources]
    results = dict(run_pipeline(settings, names, dg.DagsterInstance.ephemeral(), quality=False))
    failed = [what for what, r in results.items() if not r.success]
    if failed:
        raise SystemExit(f"the demo did not materialize: {failed}")
    return settings, url


def measure(work: Path) -> dict[str, Any]:
    from orchestration.resources import EmbedderResource
    from ragline.retrieval.search import build_retriever

    pairs = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.perf_counter()
    settings, url = materialize_demo(work)
    materialize_s = time.perf_counter() - started
    embedder = EmbedderResource().embedder()
    questions = sorted({q for p in pairs for q in (p["a"], p["b"])})
    vectors = dict(zip(questions, embedder.embed(questions), strict=True))
    with Database(url) as db:
        retriever = build_retriever(settings, db, embedder, log_queries=False)
        retrieved = {q: retriever.search(q, k=max(CONTEXT_SIZES), log=False).hits for q in questions}
        contexts = {
            k: {q: context_key((h.chunk_id, h.text_hash) for h in hits[:k]) for q, hits in retrieved.items()}
            for k in CONTEXT_SIZES
        }
        # Not what ragline ships (its context key keeps prompt order): the same passages in any order.
        context_sets = {
            k: {
                q: context_key(sorted((h.chunk_id, h.text_hash) for h in hits[:k]))
                for q, hits in retrieved.items()
            }
            for k in CONTEXT_SIZES
        }
        for p in pairs:
            p["cosine"] = float(np.dot(vectors[p["a"]], vectors[p["b"]]))
            p["same_context"] = {k: contexts[k][p["a"]] == contexts[k][p["b"]] for k in CONTEXT_SIZES}
        with db.connection() as conn:
            conn.execute("TRUNCATE ragline.answer_cache")

            def key(pair: dict, question: str, context: str) -> tuple[str, SemanticKey]:
                model = f"pair-{pair['id']}"  # each pair in a namespace of its own
                messages = [{"role": "user", "content": question}]
                exact = exact_key(model=model, prompt_version="bench@1", messages=messages, params=PARAMS)
                return exact, SemanticKey(model, "bench@1", params_hash(PARAMS), context, vectors[question])

            conditions = (
                {"any context": lambda q: "one context"}
                | {f"same top-{k} context": (lambda q, k=k: contexts[k][q]) for k in CONTEXT_SIZES}
                | {
                    f"same top-{k} passages, any order": (lambda q, k=k: context_sets[k][q])
                    for k in CONTEXT_SIZES
                }
            )
            store = AnswerCache(CacheSettings())
            rows: list[dict[str, Any]] = []
            for name, context_of in conditions.items():
                conn.execute("TRUNCATE ragline.answer_cache")
                for p in pairs:
                    exact, semantic = key(p, p["a"], context_of(p["a"]))
                    store.store(conn, exact=exact, semantic=semantic, payload={"pair": p["id"]})
                for t in THRESHOLDS:
                    cache = AnswerCache(CacheSettings(semantic=True, semantic_threshold=t))
                    hit = {}
                    for p in pairs:
                        exact, semantic = key(p, p["b"], context_of(p["b"]))
                        found = cache.lookup(conn, exact=exact, semantic=semantic)
                        hit[p["id"]] = found is not None and found.payload == {"pair": p["id"]}
                    rows.append(tally(name, t, pairs, hit))
    return {
        "pairs": pairs,
        "rows": rows,
        "materialize_s": round(materialize_s, 1),
        "questions": len(questions),
    }


def tally(condition: str, threshold: float, pairs: list[dict], hit: dict[str, bool]) -> dict[str, Any]:
    def count(kind: str | None, paraphrase: bool) -> tuple[int, int]:
        chosen = [p for p in pairs if p["paraphrase"] == paraphrase and (kind is None or p["kind"] == kind)]
        return sum(hit[p["id"]] for p in chosen), len(chosen)

    para, n_para = count(None, True)
    false, n_non = count(None, False)
    hard, n_hard = count("hard", False)
    return {
        "condition": condition,
        "threshold": threshold,
        "paraphrase_hits": para,
        "paraphrases": n_para,
        "false_hits": false,
        "non_paraphrases": n_non,
        "hard_false_hits": hard,
        "hard_non_paraphrases": n_hard,
        "false_hit_rate_upper95": round(wilson_upper(false, n_non), 4),
    }


def report(result: dict[str, Any], shipped: float) -> str:
    pairs, rows = result["pairs"], result["rows"]
    para = [p["cosine"] for p in pairs if p["paraphrase"]]
    non = [p["cosine"] for p in pairs if not p["paraphrase"]]
    hard = [p["cosine"] for p in pairs if p["kind"] == "hard"]
    lines = [
        "# Semantic cache: hit rate on paraphrases, false-hit rate on non-paraphrases",
        "",
        f"`benchmarks/semantic_cache.py`, {len(para)} paraphrase pairs and {len(non)} non-paraphrase pairs "
        f"({len(hard)} of them hard: same topic, a different ask) of `examples/cache/question_pairs.jsonl`, "
        f"{result['questions']} distinct questions about the demo corpus, embedded with the local model "
        "(all-MiniLM-L6-v2). Each pair: question a is stored, question b looked up, through the real "
        "`AnswerCache` in PostgreSQL. Context: each question's own hybrid top-k from the published demo "
        f"(materialized in {result['materialize_s']} s).",
        "",
        "Cosine similarity of the pairs (min / median / max): "
        f"paraphrases {min(para):.3f} / {median(para):.3f} / {max(para):.3f}; "
        f"non-paraphrases {min(non):.3f} / {median(non):.3f} / {max(non):.3f}; "
        f"hard non-paraphrases {min(hard):.3f} / {median(hard):.3f} / {max(hard):.3f}.",
        "",
    ]
    for condition in dict.fromkeys(r["condition"] for r in rows):
        lines += [
            f"## {condition}",
            "",
            "| threshold | paraphrase hit rate | false-hit rate | hard false hits | false hits, 95% upper |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            if r["condition"] != condition:
                continue
            mark = " (shipped)" if r["threshold"] == shipped else ""
            lines.append(
                f"| {r['threshold']:.2f}{mark} | {r['paraphrase_hits']}/{r['paraphrases']} "
                f"({r['paraphrase_hits'] / r['paraphrases']:.0%}) | {r['false_hits']}/{r['non_paraphrases']} "
                f"({r['false_hits'] / r['non_paraphrases']:.0%}) | {r['hard_false_hits']}/"
                f"{r['hard_non_paraphrases']} | {r['false_hit_rate_upper95']:.1%} |"
            )
        lines.append("")
    top = sorted((p for p in pairs if not p["paraphrase"]), key=lambda p: -p["cosine"])[:8]
    lines += [
        "## The most similar non-paraphrases",
        "",
        "| cosine | same top-5 context | a | b |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p['cosine']:.3f} | {p['same_context'][5]} | {p['a']} | {p['b']} |" for p in top]
    lines.append("")
    best = sorted((p for p in pairs if p["paraphrase"]), key=lambda p: -p["cosine"])[:8]
    lines += [
        "## The most similar paraphrases",
        "",
        "| cosine | same top-5 context | a | b |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p['cosine']:.3f} | {p['same_context'][5]} | {p['a']} | {p['b']} |" for p in best]
    lines.append("")
    clean = [t for t in THRESHOLDS if all(r["false_hits"] == 0 for r in rows if r["threshold"] >= t)]
    at = {r["condition"]: r for r in rows if r["threshold"] == shipped}
    first = {r["condition"]: r["paraphrase_hits"] for r in rows if clean and r["threshold"] == clean[0]}
    margin = (
        "the same paraphrase hits as there"
        if all(first.get(c) == r["paraphrase_hits"] for c, r in at.items())
        else "fewer paraphrase hits than there"
    )
    lines += [
        "## The shipped threshold",
        "",
        f"`cache.semantic_threshold: {shipped}`. From {clean[0] if clean else 'no threshold'} up, no "
        "non-paraphrase hits in any condition; the most similar non-paraphrase (a policy's "
        f'"allowed" vs "forbidden", cosine {top[0]["cosine"]:.3f}) shares its top-3 context, so the '
        f"same-context condition alone does not stop it. The shipped value keeps a margin above it, with "
        f"{margin}. Paraphrase hits at {shipped}: "
        + "; ".join(f"{c}: {r['paraphrase_hits']}/{r['paraphrases']}" for c, r in at.items())
        + "; false hits 0 in every condition (95% upper bound "
        + f"{at['any context']['false_hit_rate_upper95']:.1%}). On this model (MiniLM) paraphrase and "
        "same-topic questions overlap in similarity, and a one-word change (get / receive) reorders the "
        "hybrid top-5, so the semantic cache adds almost no hits to the exact cache at a safe threshold: "
        "it stays off by default.",
        "",
    ]
    same = {k: sum(p["same_context"][k] for p in pairs if p["paraphrase"]) for k in CONTEXT_SIZES}
    same_non = {k: sum(p["same_context"][k] for p in pairs if not p["paraphrase"]) for k in CONTEXT_SIZES}
    lines += [
        "Pairs whose two questions retrieve the same top-k context (k = 3 / 5 / 10): paraphrases "
        + " / ".join(str(same[k]) for k in CONTEXT_SIZES)
        + ", non-paraphrases "
        + " / ".join(str(same_non[k]) for k in CONTEXT_SIZES)
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / ".work" / "semantic_cache")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep-server", action="store_true")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args.work_dir)
    finally:
        if not args.keep_server:
            stop_embedded(args.work_dir)
    shipped = CacheSettings().semantic_threshold
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "semantic_cache.json").write_text(
        json.dumps({k: v for k, v in result.items() if k != "pairs"} | {"shipped": shipped}, indent=1) + "\n"
    )
    text = report(result, shipped)
    (args.results_dir / "semantic_cache.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
