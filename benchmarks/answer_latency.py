"""Where an answer's time goes on the demo corpus, with llama.cpp serving SmolLM2-135M on loopback:
retrieval, the support signal (stored vectors of the hits, one cosine each), context assembly, time
to first token and generation, streamed, for the first N golden questions; and an abstention's
total beside an answer's. Run benchmarks/answer_support.py first (it materializes the corpus).

    uv run --frozen python benchmarks/answer_latency.py [--questions 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA_DIR = REPO / ".ragline" / "bench-answer"
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args()

    from benchmarks._answer_setup import demo_retriever, smol_client
    from ragline.answer.answering import answer, answer_stream
    from ragline.config import load_settings
    from ragline.llm import SingleModel
    from ragline.storage.db import Database, database_url, stop_embedded
    from tests.llm_server import local_llm_server

    url = database_url(DATA_DIR)
    os.environ["DATABASE_URL"] = url
    questions = [
        json.loads(line)["question"]
        for line in (REPO / "examples/golden/questions.jsonl").read_text().splitlines()[: args.questions]
    ]
    off_topic = [
        json.loads(line)["question"]
        for line in (REPO / "examples/golden/unanswerable.jsonl").read_text().splitlines()[:4]
    ]
    settings = load_settings(REPO / "ragline.yaml")
    rows = []
    try:
        with local_llm_server(n_threads=1) as llm, Database(url, max_size=2) as db:
            client = smol_client(llm)
            retriever = demo_retriever(settings, db)
            ask = {"settings": settings, "db": db, "retriever": retriever, "models": SingleModel(client)}
            answer(questions[0], **ask, max_tokens=8)  # warm: model sessions, prepared statements
            for q in questions:
                *_, (_kind, result) = list(answer_stream(q, **ask, max_tokens=64, context_tokens=1000))
                rows.append(
                    {
                        "question": q,
                        "abstained": result.abstained,
                        **result.timings_ms,
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                    }
                )
            abstentions = [answer(q, **ask).timings_ms["total"] for q in off_topic]
    finally:
        stop_embedded(DATA_DIR)
    keys = ("retrieve", "support", "assemble", "first_token", "generate", "total")
    medians = {k: round(statistics.median(r[k] for r in rows if k in r), 1) for k in keys}
    report = {
        "questions": len(rows),
        "answered": sum(not r["abstained"] for r in rows),
        "median_ms": medians,
        "support_share_of_total": round(medians["support"] / medians["total"], 4),
        "abstention_total_ms_median": round(statistics.median(abstentions), 1),
        "median_prompt_tokens": statistics.median(r["prompt_tokens"] for r in rows),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "answer_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
