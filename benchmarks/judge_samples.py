"""How many judge samples make a judgement's interval narrower than 0.05, on the demo golden set.

Materializes the demo corpus into a scratch embedded server, answers the first N golden questions
with SmolLM2-135M (llama.cpp on loopback), then judges each answer K times per metric (seeds 0..K-1,
temperature 0.7). For k = 1..K it takes the first k samples of every judgement, computes the
bootstrap interval ragline reports (ragline.evaluation.metrics.bootstrap_ci), and averages its width
over the answered questions. The judge cache (ragline.judgements) keeps the samples: a rerun with a
larger K asks the model only for the new ones.

    uv run --frozen python benchmarks/judge_samples.py [--questions 10] [--samples 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA_DIR = REPO / ".ragline" / "bench-judge"
RESULTS = REPO / "benchmarks" / "results"
TARGET_WIDTH = 0.05


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--metrics", default="relevance,correctness,faithfulness")
    parser.add_argument("--max-tokens", type=int, default=96, help="of one judge reply")
    # Faithfulness makes two calls per sample with longer replies (~130 s per question for 10
    # samples here): judged on the first few answered questions only, to keep the run short.
    parser.add_argument("--faithfulness-questions", type=int, default=3)
    args = parser.parse_args()
    metrics = args.metrics.split(",")

    from benchmarks._answer_setup import demo_retriever, demo_settings, smol_client
    from ragline.answer.answering import answer
    from ragline.config import JudgeSettings
    from ragline.evaluation.judge import Judge
    from ragline.evaluation.metrics import bootstrap_ci
    from ragline.llm import SingleModel
    from ragline.storage.db import Database, database_url, stop_embedded
    from tests.llm_server import MODEL_NAME, local_llm_server

    golden = [
        json.loads(line)
        for line in (REPO / "examples/golden/questions.jsonl").read_text().splitlines()[: args.questions]
    ]
    url = database_url(DATA_DIR)
    os.environ["DATABASE_URL"] = url
    judged: list[dict] = []
    try:
        settings = demo_settings(url)
        started = time.perf_counter()  # answering and judging, from here
        with local_llm_server(n_threads=1) as llm, Database(url, max_size=2) as db:
            client = smol_client(llm)
            retriever = demo_retriever(settings, db)
            judge = Judge(client, JudgeSettings(samples=args.samples, max_tokens=args.max_tokens), db)
            for item in golden:
                a = answer(
                    item["question"],
                    settings=settings,
                    db=db,
                    retriever=retriever,
                    models=SingleModel(client),
                    max_tokens=64,
                    context_tokens=500,
                    log=False,
                )
                row = {"id": item["id"], "abstained": a.abstained, "answer": a.text, "metrics": {}}
                judged.append(row)
                if a.abstained:
                    continue
                with db.connection() as conn:
                    ids = conn.execute(
                        "SELECT context_chunk_ids FROM ragline.answers WHERE answer_id = %s", (a.answer_id,)
                    ).fetchone()[0]
                    texts = dict(
                        conn.execute(
                            "SELECT chunk_id, text FROM ragline.chunks WHERE chunk_id = ANY(%s)", (ids,)
                        ).fetchall()
                    )
                passages = [texts[i] for i in ids]
                calls = {
                    "relevance": lambda q=item, a=a: judge.relevance(q["question"], a.text),
                    "correctness": lambda q=item, a=a: judge.correctness(q["question"], a.text, q["answer"]),
                    "faithfulness": lambda q=item, a=a, p=passages: judge.faithfulness(
                        q["question"], a.text, p
                    ),
                    "context_precision": lambda q=item, p=passages: judge.context_precision(
                        q["question"], p, q["answer"]
                    ),
                    "context_recall": lambda q=item, p=passages: judge.context_recall(p, q["answer"]),
                }
                for metric in metrics:
                    so_far = sum(not r["abstained"] for r in judged)
                    if metric == "faithfulness" and so_far > args.faithfulness_questions:
                        continue
                    t = time.perf_counter()
                    j = calls[metric]()
                    row["metrics"][metric] = {
                        "samples": list(j.samples),
                        "reasons": [r for r in j.reasons if r],
                        "cached": j.cached,
                        "seconds": round(time.perf_counter() - t, 2),
                    }
                    print(item["id"], metric, j.samples, f"{time.perf_counter() - t:.1f}s", flush=True)
    finally:
        stop_embedded(DATA_DIR)
    elapsed = time.perf_counter() - started

    answered = [r for r in judged if not r["abstained"]]

    def judged_by(metric: str) -> list[dict]:
        return [r for r in answered if metric in r["metrics"]]

    table: dict[str, list[float | None]] = {}
    for metric in metrics:
        widths: list[float | None] = []
        for k in range(1, args.samples + 1):
            per_question = []
            for r in judged_by(metric):
                measured = [s for s in r["metrics"][metric]["samples"][:k] if s is not None]
                if len(measured) >= 2:
                    ci = bootstrap_ci(measured, seed=0)
                    per_question.append(ci.high - ci.low)
            widths.append(statistics.fmean(per_question) if per_question else None)
        table[metric] = widths
    smallest = {
        m: next((k for k, w in enumerate(ws, start=1) if w is not None and w < TARGET_WIDTH), None)
        for m, ws in table.items()
    }
    unmeasured = {
        m: sum(s is None for r in judged_by(m) for s in r["metrics"][m]["samples"]) for m in metrics
    }
    constant = {
        m: sum(len({s for s in r["metrics"][m]["samples"] if s is not None}) <= 1 for r in judged_by(m))
        for m in metrics
    }
    spreads = {
        m: statistics.fmean(
            statistics.stdev(v)
            for r in judged_by(m)
            if len(v := [s for s in r["metrics"][m]["samples"] if s is not None]) >= 2
        )
        for m in metrics
    }
    report = {
        "questions": len(judged),
        "answered": len(answered),
        "samples": args.samples,
        "metrics": metrics,
        "judge": {"model": MODEL_NAME, "temperature": 0.7, "max_tokens": args.max_tokens},
        "questions_judged": {m: len(judged_by(m)) for m in metrics},
        "mean_interval_width": table,
        "smallest_k_below_target": smallest,
        "unmeasured_samples": unmeasured,
        "questions_with_equal_samples": constant,
        "mean_spread_at_k_max": spreads,
        "seconds_total": round(elapsed, 1),
        "rows": judged,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "judge_samples.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "judge_samples.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    k_max = r["samples"]
    lines = [
        "# Judge samples: how many make the interval narrower than 0.05",
        "",
        f"Demo golden set, first {r['questions']} questions, answered by SmolLM2-135M-Instruct "
        f"(llama.cpp, one thread); {r['answered']} answered, {r['questions'] - r['answered']} abstained "
        "(an abstention is scored without the judge and left out here). Judge: the same model, "
        f"temperature {r['judge']['temperature']}, seeds 0..{k_max - 1}, "
        f"max_tokens {r['judge']['max_tokens']}. "
        "Width: the 95% percentile-bootstrap interval of a judgement's mean over its first k samples "
        "(what ragline stores), averaged over the questions judged. k = 1 has no interval.",
        "",
        "| k | " + " | ".join(f"{m} ({r['questions_judged'][m]} questions)" for m in r["metrics"]) + " |",
        "|---|" + "---|" * len(r["metrics"]),
    ]
    for k in range(1, k_max + 1):
        cells = []
        for m in r["metrics"]:
            w = r["mean_interval_width"][m][k - 1]
            cells.append("—" if w is None else f"{w:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| metric | smallest k with width < 0.05 | unmeasured samples | questions whose samples all agree "
        f"| mean spread (std) at k = {k_max} | k for 0.05 by the normal approximation |",
        "|---|---|---|---|---|---|",
    ]
    for m in r["metrics"]:
        k = r["smallest_k_below_target"][m]
        lines.append(
            f"| {m} | {k if k is not None else f'none within {k_max}'} | {r['unmeasured_samples'][m]} "
            f"of {r['questions_judged'][m] * k_max} | {r['questions_with_equal_samples'][m]} "
            f"of {r['questions_judged'][m]} "
            f"| {r['mean_spread_at_k_max'][m]:.3f} | {normal_k(r['mean_spread_at_k_max'][m])} |"
        )
    cached = sum(v["cached"] for row in r["rows"] for v in row["metrics"].values())
    total = sum(len(v["samples"]) for row in r["rows"] for v in row["metrics"].values())
    lines += [
        "",
        "The normal approximation: a 95% interval of a mean of k samples with standard deviation s is "
        "about 2 x 1.96 x s / sqrt(k) wide, so k = (2 x 1.96 x s / 0.05)^2. The bootstrap widths at small "
        "k are narrower than that: when the few samples of a question happen to agree, its interval "
        "has width 0.",
        "",
        f"Run time: {r['seconds_total']} s, answering and judging; {cached} of {total} samples came "
        "from the judge cache (an earlier run); on a 2-core machine shared with other jobs. "
        "Per-question samples: judge_samples.json.",
        "",
    ]
    return "\n".join(lines)


def normal_k(spread: float) -> int:
    """Samples for a 95% interval narrower than the target, by the normal approximation."""
    return math.ceil((2 * 1.96 * spread / TARGET_WIDTH) ** 2)


if __name__ == "__main__":
    main()
