"""Eval sets, daily retrieval scores, the regression gate, A/B and drift, materialized through Dagster
against the embedded Postgres and the local model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import dagster as dg
import psycopg

from ragline.config import Settings
from ragline.evaluation.eval_sets import load_golden
from ragline.index.publishing import accept_change
from ragline.storage.db import Database
from tests.conftest import (
    EXAMPLES,
    REPO,
    UNTESTED,
    checks,
    local_embedder,
    metadata,
    quality_run,
    run,
    table_rows,
)
from tests.conftest import write_project as write_any_project
from tests.openai_server import EmbeddingsServer

FIXTURES = Path(__file__).parent / "fixtures"
# These tests score fixed days of November 2026: the daily partitions must start before them (by
# default they start at the first day the project was materialized, which is today).
FIRST_DAY = "2026-11-01"


def write_project(root: Path, sources: list[dict], **overrides) -> Settings:
    evaluation = {"start_date": FIRST_DAY, **overrides.pop("evaluation", {})}
    return write_any_project(root, sources, evaluation=evaluation, **overrides)


HANDBOOK = [
    "paid-time-off.md",
    "expenses-and-travel.md",
    "meeting-norms.md",
    "benefits.md",
    "remote-work-and-equipment.md",
    "security-basics.md",
    "onboarding.md",
]


def handbook_project(tmp_path: Path, **overrides):
    """Seven handbook pages and the golden questions about them."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for name in HANDBOOK:
        shutil.copy(EXAMPLES / "handbook" / name, corpus / name)
    wanted = {f"handbook:{n}" for n in HANDBOOK}
    lines = [
        line
        for line in (REPO / "examples/golden/questions.jsonl").read_text().splitlines()
        if set(json.loads(line)["relevant_documents"]) <= wanted
    ]
    (tmp_path / "golden.jsonl").write_text("\n".join(lines) + "\n")
    config = {
        "eval_sets": [{"name": "golden", "kind": "golden", "path": "golden.jsonl"}],
        "variants": [{"name": "main", "strategy": "dense"}],
        "evaluation": {"k": 3},  # seven documents: at k=10 every question would hit
        **overrides,
    }
    sources = [{"name": "handbook", "root": "corpus", "chunking": {"strategy": "markdown"}}]
    return write_project(tmp_path, sources, **config), len(lines)


def scores(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT partition::text, variant, eval_set, questions, ndcg FROM ragline.retrieval_scores "
            "ORDER BY partition, variant, eval_set"
        ).fetchall()


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_golden_file_bad_lines_are_rejected_with_reasons(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(
        '{"id": "a", "question": "ok?", "relevant_documents": ["s:d"]}\n'
        "not json\n"
        '{"id": "b", "question": "no ids?"}\n'
        '{"id": "c", "question": "graded?", "relevant": {"s:d": 2, "s:e": 0}}\n'
        '{"question": "no id?", "relevant_documents": ["s:d"]}\n'
        '{"id": "d", "question": "word gain?", "relevant": {"s:d": "high"}}\n'
    )
    loaded = load_golden(path, "g")
    assert [q.question_id for q in loaded.questions] == ["a", "c"]
    assert loaded.questions[1].relevant == {"s:d": 2.0, "s:e": 0.0}
    assert [(r.where, r.reason.split(":")[0]) for r in loaded.rejected] == [
        ("g.jsonl:2", "invalid JSON"),
        ("g.jsonl:3", "no relevant document or chunk ids"),
        ("g.jsonl:5", "needs a non-empty 'id' and 'question'"),
        ("g.jsonl:6", "relevant must be a list of ids or an id -> numeric gain map"),
    ]


def test_regression_gate_passes_a_rerun_and_fails_a_degraded_retriever(tmp_path, db_url):
    settings, questions = handbook_project(tmp_path)
    first = run(settings, day="2026-11-20")
    assert all(r.success for r in first.values())
    quality = quality_run(first)
    gate = check_evaluation(quality, "ndcg_at_10_has_not_regressed")
    # Nothing earlier to compare with: a yellow warning that says so, never a green pass; the
    # blocking gate does not stop the rest of the run (variant_comparison ran).
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["not_tested"].value == "compared 0: main/golden: first scored partition"
    assert gate.metadata["compared"].value == 0 and gate.metadata["partition"].value == "2026-11-20"
    assert quality.success and quality.asset_materializations_for_node("variant_comparison")
    # Settings are one text value, not numbers Dagster would plot as a trend.
    assert json.loads(gate.metadata["config"].value) == {"confidence": 0.95, "min_effect": 0.02}
    recall = check_evaluation(first["search index"], "hnsw_recall_at_10_meets_threshold").metadata
    assert {"min_recall", "ef_search", "confidence", "min_effect"}.isdisjoint(recall)
    assert set(json.loads(recall["config"].value)) == {"min_recall", "ef_search"}
    index = metadata(first["search index"], "search_index")
    assert isinstance(index["dim"], str) and isinstance(index["recall_at_10"], float)

    rerun = quality_run(run(settings, day="2026-11-21"))
    gate = check_evaluation(rerun, "ndcg_at_10_has_not_regressed")
    assert gate.passed and gate.metadata["compared"].value == 1 and "not_tested" not in gate.metadata
    [row] = table_rows(gate.metadata["comparisons"])
    assert row["variant / set"] == "main / golden" and row["against"] == f"2026-11-20 (n={questions})"
    assert row["verdict"] == "no significant difference"

    # Deliberately degraded: the same variant now embeds with its model cut to 8 dimensions.
    with EmbeddingsServer(local_embedder(), dim_override=8) as server:
        embedding = {"provider": "openai", "model": "minilm-cut", "base_url": server.base_url}
        degraded, _ = handbook_project(
            tmp_path, variants=[{"name": "main", "strategy": "dense", "embedding": embedding}]
        )
        result = run(degraded, day="2026-11-22")
        bad = quality_run(result)
        gate = check_evaluation(bad, "ndcg_at_10_has_not_regressed")
        assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
        assert gate.metadata["regressions"].value == "main/golden"
        # The next day compares with the last day that passed, not with the failed one: a drop
        # keeps failing until it is fixed (or a baseline is pinned).
        still_bad = quality_run(run(degraded, day="2026-11-23"))
    gate = check_evaluation(still_bad, "ndcg_at_10_has_not_regressed")
    assert not gate.passed and table_rows(gate.metadata["comparisons"])[0]["against"].startswith("2026-11-21")
    rows = scores(db_url)
    assert [r[:4] for r in rows] == [
        ("2026-11-20", "main", "golden", questions),
        ("2026-11-21", "main", "golden", questions),
        ("2026-11-22", "main", "golden", questions),
        ("2026-11-23", "main", "golden", questions),
    ]
    assert rows[0][4] == rows[1][4] > rows[2][4] + 0.2
    with psycopg.connect(db_url) as conn:
        failed = conn.execute(
            "SELECT count(*) FROM ragline.retrieval_results WHERE partition = '2026-11-22' AND hit = 0"
        ).fetchone()[0]
    failures = table_rows(metadata(bad, "retrieval_scores")["failed_questions"])
    assert failed > 0 and failures and failures[0]["variant/set/question"].startswith("main/golden/")
    assert failures[0]["variant/set/question"] in gate.metadata["failing_ids"].value  # failing rows named


def edit_golden(path: Path, edits: dict[str, dict]) -> None:
    """Overwrite fields of the golden questions with these ids."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, **edits.get(r["id"], {})}) + "\n" for r in records))


def question_hashes(url: str, day: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT question_id, question_hash FROM ragline.retrieval_results WHERE partition = %s", (day,)
        ).fetchall()
    return dict(rows)


def test_regression_gate_does_not_pair_edited_questions(tmp_path, db_url):
    settings, questions = handbook_project(tmp_path)
    assert all(r.success for r in run(settings, day="2026-11-20").values())
    # Between the two days one question is reworded and another is judged against other documents.
    edit_golden(
        tmp_path / "golden.jsonl",
        {
            "q001": {"question": "How many vacation days do I get from my third year on?"},
            "q002": {"relevant_documents": ["handbook:expenses-and-travel.md", "handbook:benefits.md"]},
        },
    )
    second = run(settings, day="2026-11-21")
    assert all(r.success for r in second.values())
    gate = check_evaluation(quality_run(second), "ndcg_at_10_has_not_regressed")
    assert gate.passed and gate.metadata["compared"].value == 1
    # Every unedited question is paired with the day before; the two edited ones are not.
    assert table_rows(gate.metadata["comparisons"])[0]["against"] == f"2026-11-20 (n={questions - 2})"
    before, after = question_hashes(db_url, "2026-11-20"), question_hashes(db_url, "2026-11-21")
    assert before.keys() == after.keys() and len(before) == questions
    assert all(len(h) == 16 for h in [*before.values(), *after.values()])
    assert {q for q in before if before[q] != after[q]} == {"q001", "q002"}


def test_scores_and_gate_verdict_are_stored_together_or_not_at_all(tmp_path, db_url):
    settings, questions = handbook_project(tmp_path)
    assert all(r.success for r in run(settings, day="2026-11-20").values())
    with psycopg.connect(db_url) as conn:  # a corrupt baseline score: the comparison will raise
        conn.execute("UPDATE ragline.retrieval_results SET ndcg = 'NaN' WHERE question_id = 'q001'")
    failed = quality_run(run(settings, day="2026-11-21"))
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert "must be finite" in str(failure.event_specific_data.error)
    # Nothing of the day was stored: no scores row with an unset verdict that a later day would
    # take as its baseline, and no per-question rows.
    with psycopg.connect(db_url) as conn:
        stored = conn.execute(
            "SELECT partition::text, gate_passed, (SELECT count(*) FROM ragline.retrieval_results r "
            "WHERE r.partition = s.partition) FROM ragline.retrieval_scores s ORDER BY 1"
        ).fetchall()
    assert stored == [("2026-11-20", None, questions)]


def test_regression_severity_warn_does_not_block(tmp_path, db_url):
    settings, _ = handbook_project(tmp_path, evaluation={"severity": "warn", "baseline": "2026-11-20"})
    run(settings, day="2026-11-20")
    with EmbeddingsServer(local_embedder(), dim_override=8) as server:
        embedding = {"provider": "openai", "model": "minilm-cut", "base_url": server.base_url}
        degraded, _ = handbook_project(
            tmp_path,
            evaluation={"severity": "warn", "baseline": "2026-11-20"},
            variants=[{"name": "main", "strategy": "dense", "embedding": embedding}],
        )
        result = quality_run(run(degraded, day="2026-11-25"))
    gate = check_evaluation(result, "ndcg_at_10_has_not_regressed")
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert result.success  # shown, not blocking: variant_comparison still ran
    assert metadata(result, "variant_comparison")["dagster/row_count"] == 0  # one variant: no A/B pair


def test_variants_compared_side_by_side(tmp_path, db_url):
    variants = [
        {"name": "hybrid", "strategy": "hybrid"},
        {"name": "dense", "strategy": "dense"},
        {
            "name": "small",
            "strategy": "hybrid",
            "chunking": {"strategy": "sentence", "chunk_size": 64, "chunk_overlap": 0},
        },
    ]
    settings, _ = handbook_project(tmp_path, variants=variants, evaluation={"control": "hybrid"})
    result = quality_run(run(settings, day="2026-11-20"))
    meta = metadata(result, "variant_comparison")
    assert meta["control"] == "hybrid" and meta["dagster/row_count"] == 2
    assert [(r["variant / set"], r["against"].split(" ")[0]) for r in table_rows(meta["comparison"])] == [
        ("dense / golden", "hybrid"),
        ("small / golden", "hybrid"),
    ]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT variant, questions, low <= diff AND diff <= high, verdict "
            "FROM ragline.variant_comparisons"
        ).fetchall()
        small = conn.execute(
            "SELECT count(*) FROM ragline.variant_chunks WHERE variant = 'small'"
        ).fetchone()[0]
        default = conn.execute("SELECT count(*) FROM ragline.chunks").fetchone()[0]
    assert {r[0] for r in rows} == {"dense", "small"} and all(r[2] for r in rows)
    assert small > default  # 64-token chunks: its own, smaller chunk set


def test_beir_dataset_round_trips_into_scores(tmp_path, db_url):
    shutil.copytree(FIXTURES / "beir_tiny", tmp_path / "beir")
    settings = write_project(
        tmp_path,
        [{"name": "recipes", "root": "beir", "format": "beir"}],
        eval_sets=[{"name": "recipes_test", "kind": "beir", "source": "recipes"}],
        variants=[{"name": "hybrid", "strategy": "hybrid"}],
    )
    results = run(settings, day="2026-11-20")
    index = results["search index"]
    assert all(checks(index).values()), checks(index)
    docs = metadata(results["source recipes"], "raw_documents")
    assert docs["new"] == 8 and docs["quarantined"] == 1  # d9 has no text
    meta = metadata(index, "eval_set")
    assert meta["dagster/row_count"] == 5  # q6 has no judgements; q5's score-0 pair is not relevant
    with psycopg.connect(db_url) as conn:
        relevant = conn.execute(
            "SELECT relevant FROM ragline.eval_questions WHERE question_id = 'q3'"
        ).fetchone()[0]
        ((n, ndcg, recall),) = conn.execute(
            "SELECT questions, ndcg, recall FROM ragline.retrieval_scores WHERE eval_set = 'recipes_test'"
        ).fetchall()
    assert relevant == {"recipes:corpus.jsonl#d4": 2.0}
    assert n == 5 and recall == 1.0 and ndcg > 0.8


def test_eval_set_checks_catch_duplicates_and_unknown_ids(tmp_path, db_url):
    settings, _ = handbook_project(tmp_path)
    with (tmp_path / "golden.jsonl").open("a") as fh:
        # q001 again, up to case and punctuation
        fh.write(
            '{"id": "dup", "question": "now that I\'ve passed my second work anniversary how much '
            'vacation do I get each year", "relevant_documents": ["handbook:paid-time-off.md"]}\n'
        )
        fh.write(
            '{"id": "ghost", "question": "Where is the ghost?", '
            '"relevant_documents": ["handbook:ghost.md"]}\n'
        )
        fh.write("{broken\n")
    index = run(settings, day="2026-11-20")["search index"]
    found = checks(index)
    assert found["eval_set.eval_questions_are_unique"] is False
    assert found["eval_set.eval_references_exist_in_corpus"] is False
    assert found["eval_set.eval_set_lines_are_valid"] is False
    missing = check_evaluation(index, "eval_references_exist_in_corpus").metadata
    assert "handbook:ghost.md" in str(missing["expect_column_values_to_be_null.examples"].value)
    assert missing["failing_ids"].value == "golden/ghost -> handbook:ghost.md"
    assert "golden/dup" in check_evaluation(index, "eval_questions_are_unique").metadata["failing_ids"].value
    # The bad line is named: its file, line number and why.
    lines = check_evaluation(index, "eval_set_lines_are_valid").metadata
    last = len((tmp_path / "golden.jsonl").read_text().splitlines())
    assert lines["first_rejected"].value.startswith(f"golden: golden.jsonl:{last}: invalid JSON")
    assert lines["partition"].value == "none (unpartitioned)" and "what_to_do" in lines


def test_synthetic_questions_are_flagged_and_stable(tmp_path, db_url):
    settings, _ = handbook_project(
        tmp_path, eval_sets=[{"name": "syn", "kind": "synthetic", "count": 12, "seed": 3}]
    )
    first = run(settings, day="2026-11-20")["search index"]
    assert all(checks(first).values())
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT question_id, question, synthetic, kind, relevant FROM ragline.eval_questions ORDER BY 1"
        ).fetchall()
    assert len(rows) == 12 and all(r[2] and r[3] == "synthetic-heuristic" for r in rows)
    assert all(r[1].startswith("What does the documentation say about ") for r in rows)
    second = run(settings, day="2026-11-21")["search index"]
    assert table_rows(metadata(second, "eval_set")["sets"]) == [
        {
            "eval set": "syn",
            "kind": "synthetic",
            "questions (synthetic)": "12 (12)",
            "rejected lines": "0",
            "regenerated": "False",
        }
    ]
    with psycopg.connect(db_url) as conn:
        again = conn.execute(
            "SELECT question_id, question, synthetic, kind, relevant FROM ragline.eval_questions ORDER BY 1"
        ).fetchall()
    assert again == rows


# --- drift --------------------------------------------------------------------------------------------

DISHES = ["risotto", "paella", "lasagne", "ramen", "goulash", "tagine", "curry", "chowder", "gumbo", "pho"]
STEPS = [
    "Toast the rice in butter",
    "Brown the onions slowly",
    "Simmer the stock for an hour",
    "Season with smoked paprika",
    "Fold in grated parmesan",
    "Rest the dough overnight",
]


def recipes(n: int) -> list[str]:
    return [
        f"# How to cook {DISHES[i % 10]}\n\n{STEPS[i % 6]} before adding the {DISHES[(i + 3) % 10]} spices. "
        f"{STEPS[(i + 2) % 6]}, then serve the {DISHES[i % 10]} hot with bread and a glass of wine. "
        f"Leftovers keep for {i % 4 + 2} days in the fridge."
        for i in range(n)
    ]


def test_drift_check_alarms_on_a_different_corpus_and_on_new_queries(tmp_path, db_url):
    settings, _ = handbook_project(tmp_path, eval_sets=[], drift={"min_queries": 20})
    day1 = quality_run(run(settings, day="2026-11-20"))
    # The baseline is pinned from this very corpus: compared with itself, it tested nothing.
    assert checks(day1)["drift_metrics.corpus_has_not_drifted"] == UNTESTED
    assert metadata(day1, "drift_metrics")["baseline_pinned_this_run"] is True

    # The same corpus again is not drift; a corpus replaced by recipes is.
    day2 = quality_run(run(settings, day="2026-11-21"))
    assert checks(day2)["drift_metrics.corpus_has_not_drifted"] is True
    for f in (tmp_path / "corpus").glob("*.md"):
        f.unlink()
    for i, text in enumerate(recipes(40)):
        (tmp_path / "corpus" / f"recipe-{i}.md").write_text(text)
    # Replacing the whole source is a mass change: accepted here, as a user would.
    with Database(db_url) as db, db.connection() as conn:
        accept_change(conn, "handbook")
    day3 = quality_run(run(settings, day="2026-11-22"))
    corpus = check_evaluation(day3, "corpus_has_not_drifted")
    assert not corpus.passed and "handbook" in corpus.metadata["alarms"].value
    # The alarm reads as a share of new content and names the documents that hold it, on the check,
    # in the stored row and in `ragline status`.
    assert "% new content" in corpus.metadata["alarms"].value
    assert "handbook/recipe-" in corpus.metadata["new_content"].value
    from orchestration.commands import _format_quality
    from ragline.monitoring.drift import latest_drift

    with psycopg.connect(db_url) as conn:
        drift = {(r["scope"], r["subject"]): r for r in latest_drift(conn)}
    assert drift[("corpus_vs_baseline", "handbook")]["effect"] > 0.5
    assert "handbook/recipe-" in drift[("corpus_vs_baseline", "all")]["new_content"]
    status = "\n".join(_format_quality({"drift": list(drift.values())}))
    print(status)
    assert "ALARM" in status and "new content in documents" in status and "handbook/recipe-" in status

    # Queries: a week of HR questions, then a day of cooking questions.
    hr = [
        q["question"]
        for q in map(json.loads, (REPO / "examples/golden/questions.jsonl").read_text().splitlines())
    ]
    with psycopg.connect(db_url) as conn:
        for i, q in enumerate(hr):
            conn.execute(
                "INSERT INTO ragline.query_log (asked_at, query, strategy, k, results, latency_ms) "
                "VALUES (%s, %s, 'lexical', 10, '[]', 1)",
                (f"2026-11-2{i % 3} 12:00+00", q),
            )
        for i in range(25):
            conn.execute(
                "INSERT INTO ragline.query_log (asked_at, query, strategy, k, results, latency_ms) "
                "VALUES ('2026-11-23 12:00+00', %s, 'lexical', 10, '[]', 1)",
                (f"How long should I simmer {DISHES[i % 10]} with {STEPS[i % 6].lower()}?",),
            )
        conn.execute("DELETE FROM ragline.drift_baseline")  # re-pin on the recipes: only queries drift now
    day4 = quality_run(run(settings, day="2026-11-23"))
    queries = check_evaluation(day4, "queries_have_not_drifted")
    assert not queries.passed and queries.metadata["alarms"].value.startswith("all: about")
    assert checks(day4)["drift_metrics.corpus_has_not_drifted"] == UNTESTED  # re-pinned in this run
    table = metadata(day4, "drift_metrics")["drift"]
    assert "queries_vs_corpus" in table and "queries_vs_history" in table


def test_llm_reranking_and_llm_questions_through_config(tmp_path, db_url):
    """rerank: llm and LLM-written synthetic questions, against llama.cpp serving SmolLM2 locally."""
    from ragline.retrieval.search import build_retriever
    from ragline.storage.db import Database
    from tests.llm_server import local_llm_server

    with local_llm_server() as url:
        llm = {"model": "SmolLM2-135M-Instruct", "base_url": url}
        settings, _ = handbook_project(
            tmp_path,
            llm=llm,
            eval_sets=[{"name": "syn", "kind": "synthetic", "count": 4, "seed": 1}],
            variants=[
                {"name": "llm_reranked", "strategy": "hybrid", "rerank": "llm", "rerank_candidates": 4}
            ],
        )
        results = run(settings, day="2026-11-20")
        assert all(r.success for r in results.values())
        with psycopg.connect(db_url) as conn:
            kinds = conn.execute("SELECT DISTINCT kind, synthetic FROM ragline.eval_questions").fetchall()
            scored = conn.execute("SELECT variant, questions FROM ragline.retrieval_scores").fetchall()
        assert kinds == [("synthetic-llm", True)]
        assert scored and scored[0][0] == "llm_reranked"
        with Database(db_url, max_size=1) as db:
            retriever = build_retriever(settings, db, local_embedder())
            assert retriever.reranker is None  # the pipeline default has no reranker
            variant = build_retriever(settings, db, local_embedder(), variant=settings.variants[0])
            result = variant.search("How many vacation days do I get?", k=3, log=False)
        assert variant.reranker.name == "llm" and "rerank" in result.timings_ms
        assert len(result.hits) == 3 and all(-1 <= h.score <= 10 for h in result.hits)


def test_a_question_the_llm_writes_twice_is_rejected_not_stored_twice(
    tmp_path, server_url, handbook_template
):
    """A small model answers several passages with the same stock question (SmolLM2 did: "What is
    the answer to this question?" twice, and the next `ragline materialize` failed on
    eval_questions_are_unique): the repeat is a rejected line with its reason, the set stays unique."""
    from ragline.config import EvalSetSettings
    from ragline.evaluation.eval_sets import check_frames, synthetic_set
    from ragline.expectations import check_eval_questions
    from ragline.llm import ChatClient
    from tests.conftest import drop_database, fresh_database, handbook_project

    name, url = fresh_database(server_url, template=handbook_template)
    replies = ["What is the answer to this question?", "How many days of leave?"]
    try:
        with EmbeddingsServer(chat_replies=replies) as server, psycopg.connect(url, autocommit=True) as conn:
            chat = ChatClient(base_url=server.base_url, model="scripted", api_key=None, max_retries=0)
            spec = EvalSetSettings(name="syn", kind="synthetic", count=4, seed=1)
            loaded = synthetic_set(conn, spec, chat)
            questions, references = check_frames(conn, [loaded])
        assert len(server.requests) == 4  # every sampled chunk was asked
        assert [q.question for q in loaded.questions] == replies
        assert len(loaded.rejected) == 2
        first = loaded.questions[1].metadata["chunk_id"]
        reason = f"the llm repeated the question it wrote for chunk {first}"
        assert [r.reason for r in loaded.rejected] == [reason, reason]
        outcomes = {o.name: o.passed for o in check_eval_questions(questions, references, [], lines=2)}
        assert outcomes["eval_questions_are_unique"]

        # A set stored with repeats by the generator before it rejected them (its key had no
        # version) is generated anew once, not kept failing the check (and holding the scores).
        import hashlib
        from dataclasses import asdict

        from ragline.evaluation.eval_sets import LoadedSet, load_sets, store_set

        old_key = hashlib.sha256(json.dumps(["llm", asdict(spec) | {"path": None}]).encode()).hexdigest()
        repeats = [dataclasses.replace(q, question=replies[0]) for q in loaded.questions]
        with EmbeddingsServer(chat_replies=replies) as server, psycopg.connect(url, autocommit=True) as conn:
            store_set(conn, LoadedSet("syn", "synthetic", repeats, [], old_key))
            chat = ChatClient(base_url=server.base_url, model="scripted", api_key=None, max_retries=0)
            settings = handbook_project(tmp_path, eval_sets=[dataclasses.asdict(spec) | {"path": None}])
            [again] = load_sets(conn, settings, chat)
        assert again.regenerated and [q.question for q in again.questions] == replies
    finally:
        drop_database(server_url, name)


def test_a_synthetic_sets_rejects_do_not_fail_the_lines_check(
    tmp_path, server_url, handbook_template, monkeypatch
):
    """Through the asset: the generator's repeats leave the synthetic set smaller and unique, and
    eval_set_lines_are_valid (a check on eval set FILES) does not fail on them: with only a
    synthetic set it reads no line and says so (hand-run: it failed, blocking the index run)."""
    from tests.conftest import drop_database, fresh_database, handbook_project

    name, url = fresh_database(server_url, template=handbook_template)
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        with EmbeddingsServer(chat_replies=["What is the answer to this question?"]) as server:
            settings = handbook_project(
                tmp_path,
                llm={"model": "scripted", "base_url": server.base_url, "max_retries": 0},
                eval_sets=[{"name": "syn", "kind": "synthetic", "count": 3, "seed": 1}],
            )
            results = run(settings, quality=False)
        index = results["search index"]
        assert index.success
        verdicts = checks(index)
        assert verdicts["eval_set.eval_questions_are_unique"] is True
        assert verdicts["eval_set.eval_set_lines_are_valid"] == UNTESTED
        meta = metadata(index, "eval_set")
        rejected = table_rows(meta["rejected"])
        assert len(rejected) == 2 and all("repeated the question" in r["reason"] for r in rejected)
        assert (meta["rejected_lines"], meta["generator_rejects"]) == (0, 2)
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM ragline.eval_questions WHERE eval_set = 'syn'")
            assert stored.fetchone()[0] == 1
    finally:
        from orchestration.resources import close_databases

        close_databases()
        drop_database(server_url, name)
