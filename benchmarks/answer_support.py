"""Where answer.min_support separates answerable from unanswerable questions, on the demo corpus.

The signal: the best retrieved passage's cosine similarity to the question (all-MiniLM-L6-v2), for
each retrieval strategy's top k. Answerable: the 36 golden questions (examples/golden/questions.jsonl);
unanswerable: 20 questions the demo documents do not answer (examples/golden/unanswerable.jsonl),
12 off-topic and 8 near the domain (they share words with it). Materializes the data plane into a
scratch embedded server first.

    uv run --frozen python benchmarks/answer_support.py [--k 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".ragline" / "bench-answer"
RESULTS = REPO / "benchmarks" / "results"


def questions(name: str) -> list[dict]:
    return [json.loads(line) for line in (REPO / "examples/golden" / name).read_text().splitlines() if line]


def best_threshold(yes: list[float], no: list[float]) -> tuple[float, float]:
    """The cut (midway between neighbouring scores) with the best accuracy, and that accuracy."""
    scores = sorted(set(yes + no))
    best = (scores[0], 0.0)
    for low, high in zip(scores, scores[1:], strict=False):
        cut = (low + high) / 2
        right = sum(s >= cut for s in yes) + sum(s < cut for s in no)
        accuracy = right / (len(yes) + len(no))
        if accuracy > best[1]:
            best = (cut, accuracy)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    from benchmarks._answer_setup import demo_settings
    from ragline.answer.answering import similarities
    from ragline.config import VariantSettings
    from ragline.index.embedding import build_embedder
    from ragline.retrieval.search import build_retriever
    from ragline.storage.db import Database, database_url, stop_embedded

    url = database_url(DATA_DIR)
    os.environ["DATABASE_URL"] = url
    try:
        settings = demo_settings(url)
        embedder = build_embedder(settings.embedding, None)
        answerable = [q["question"] for q in questions("questions.jsonl")]
        unanswerable = questions("unanswerable.jsonl")
        report: dict = {"k": args.k, "answerable": len(answerable), "unanswerable": len(unanswerable)}
        with Database(url, max_size=2) as db:
            for strategy in ("dense", "lexical", "hybrid"):
                variant = VariantSettings(strategy, replace(settings.retrieval, strategy=strategy))
                retriever = build_retriever(settings, db, embedder, variant=variant, log_queries=False)

                def support(question: str, retriever=retriever) -> float:
                    hits = retriever.search(question, k=args.k).hits
                    qvec = embedder.embed([question])[0]
                    return float(similarities(db, retriever, hits, qvec).max()) if hits else -1.0

                yes = [support(q) for q in answerable]
                no = [support(q["question"]) for q in unanswerable]
                cut, accuracy = best_threshold(yes, no)
                report[strategy] = {
                    "answerable_min": round(min(yes), 4),
                    "answerable_p10": round(statistics.quantiles(yes, n=10)[0], 4),
                    "answerable_median": round(statistics.median(yes), 4),
                    "unanswerable_max": round(max(no), 4),
                    "unanswerable_median": round(statistics.median(no), 4),
                    "near_domain_max": round(
                        max(s for s, q in zip(no, unanswerable, strict=True) if q["kind"] == "near_domain"), 4
                    ),
                    "best_cut": round(cut, 4),
                    "best_cut_accuracy": round(accuracy, 4),
                    "answered_at": {
                        f"{cut:.2f}": {
                            "answerable_answered": sum(s >= cut for s in yes),
                            "unanswerable_abstained": sum(s < cut for s in no),
                        }
                        for cut in (0.30, 0.35, 0.40)
                    },
                    "per_question_unanswerable": {
                        q["id"]: round(s, 4) for q, s in zip(unanswerable, no, strict=True)
                    },
                }
    finally:
        stop_embedded(DATA_DIR)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "answer_support.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: v
                if not isinstance(v, dict)
                else {x: y for x, y in v.items() if x != "per_question_unanswerable"}
                for k, v in report.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
