"""Answer quality on the demo golden set: two answer variants (hybrid vs dense retrieval, the same
model and prompt) answered and judged by SmolLM2-135M (llama.cpp, one thread), with intervals, the
unmeasured share and the pairwise A/B. SmolLM2 exercises the protocol; its judgements are toy-level.

Materializes the demo's data plane into a scratch embedded server first (variants hybrid and dense
only). Judging is slow: --max-questions caps the questions (the first N golden questions by id).

    uv run --frozen python benchmarks/answer_quality.py [--max-questions 4] [--samples 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".ragline" / "bench-answer-quality"
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("faithfulness", "relevance", "correctness", "token_f1", "embedding_cosine")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-questions", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = parser.parse_args()

    import dagster as dg
    import psycopg

    from orchestration.commands import run_pipeline
    from ragline.config import (
        AnswerEvaluationSettings,
        AnswerVariantSettings,
        LLMSettings,
        load_settings,
    )
    from ragline.evaluation.answer_scoring import score_answers
    from ragline.evaluation.judge import Judge, JudgeSettings
    from ragline.index.embedding import build_embedder
    from ragline.llm import ChatClient
    from ragline.storage.db import Database, database_url, migrate, stop_embedded
    from tests.llm_server import MODEL_NAME, local_llm_server

    url = database_url(DATA_DIR)
    os.environ["DATABASE_URL"] = url
    try:
        migrate(url)
        demo = load_settings(REPO / "ragline.yaml")
        keep = [v for v in demo.variants if v.name in ("hybrid", "dense")]
        settings = dataclasses.replace(demo, variants=tuple(keep), eval_sets=demo.eval_sets[:1])
        with psycopg.connect(url) as conn:
            published = conn.execute("SELECT count(*) FROM ragline.published_generations").fetchone()[0]
        if published < len(settings.sources):
            run_pipeline(
                settings, [s.name for s in settings.sources], dg.DagsterInstance.ephemeral(), quality=False
            )
        embedder = build_embedder(settings.embedding, None)
        with local_llm_server(n_threads=args.threads) as llm_url, Database(url, max_size=2) as db:
            settings = dataclasses.replace(
                settings,
                # A shared machine under load: llama.cpp on one thread may take minutes per call.
                llm=LLMSettings(
                    model=MODEL_NAME,
                    base_url=llm_url,
                    context_window=2048,
                    max_retries=0,
                    timeout_seconds=900,
                ),
                answer=dataclasses.replace(settings.answer, max_tokens=48, context_tokens=250),
                answer_evaluation=AnswerEvaluationSettings(
                    variants=(
                        AnswerVariantSettings("hybrid", retrieval="hybrid"),
                        AnswerVariantSettings("dense", retrieval="dense"),
                    ),
                    eval_sets=("golden",),
                    metrics=METRICS,
                    gate_metrics=("correctness", "token_f1"),
                    max_questions=args.max_questions,
                    min_questions=1,  # a few questions measure the cost; the A/B rows still get made
                ),
            )
            client = ChatClient(
                base_url=llm_url, model=MODEL_NAME, api_key=None, max_retries=0, timeout_seconds=900
            )
            judge = Judge(client, JudgeSettings(samples=args.samples, max_tokens=96), db)
            day = dt.date(2026, 11, 29)
            started = time.perf_counter()
            scores = score_answers(db, settings, embedder, judge, day, print)
            seconds = time.perf_counter() - started
        report = {
            "questions_per_variant": args.max_questions,
            "judge_samples_k": args.samples,
            "threads": args.threads,
            "model": MODEL_NAME,
            "seconds": round(seconds, 1),
            "load_average_1min_at_end": round(os.getloadavg()[0], 1),
            "judge_samples": scores.judge_samples,
            "judge_samples_cached": scores.cached_samples,
            "scores": [
                {
                    "variant": v,
                    "metric": s.metric,
                    "mean": s.mean,
                    "low": s.interval.low if s.interval else None,
                    "high": s.interval.high if s.interval else None,
                    "measured": s.measured,
                    "unmeasured": s.unmeasured,
                }
                for v, _n, s in scores.scores
            ],
            "pointwise": [c.row() for c in scores.pointwise],
            "pairwise": [p.row() for p in scores.pairwise],
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "answer_quality.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (RESULTS / "answer_quality.md").write_text(markdown(report))
        print(markdown(report))
    finally:
        stop_embedded(DATA_DIR)


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(r: dict) -> str:
    lines = [
        "# Answer quality on the demo golden set (benchmarks/answer_quality.py)",
        "",
        f"The first {r['questions_per_variant']} golden questions by id, answered by two answer variants "
        f"(hybrid and dense retrieval; {r['model']} as the answer model and the judge, llama.cpp on "
        f"{r.get('threads', 1)} thread(s), prompt answer@1, 48 answer tokens, 250 context tokens, "
        "96 judge tokens); "
        f"k = {r['judge_samples_k']} "
        f"judge samples per metric; {r['judge_samples']} judge samples ({r['judge_samples_cached']} "
        f"from the cache) in {r['seconds']} s on a 2-core machine (1-minute load average "
        f"{r.get('load_average_1min_at_end', '?')} at the end). "
        "SmolLM2 exercises the protocol: its scores are not a statement about the variants.",
        "",
        "| variant | metric | mean [95% interval] | measured | unmeasured share |",
        "|---|---|---|---|---|",
    ]
    for s in r["scores"]:
        asked = s["measured"] + s["unmeasured"]
        share = f"{s['unmeasured'] / asked:.0%}" if asked else "—"
        lines.append(
            f"| {s['variant']} | {s['metric']} | {_f(s['mean'])} [{_f(s['low'])}, {_f(s['high'])}] "
            f"| {s['measured']} | {share} |"
        )
    lines += ["", "A/B, dense against hybrid (the control):", ""]
    lines += ["| kind | metric | n | diff [interval] | verdict |", "|---|---|---|---|---|"]
    for kind, rows in (("pointwise", r["pointwise"]), ("pairwise", r["pairwise"])):
        for c in rows:
            lines.append(
                f"| {kind} | {c['metric']} | {c['questions']} | {_f(c['diff'])} [{_f(c['low'])}, "
                f"{_f(c['high'])}] | {c['verdict']} |"
            )
    for p in r["pairwise"]:
        lines.append("")
        lines.append(f"Pairwise details: {json.dumps(p['details'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
