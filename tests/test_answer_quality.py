"""Answer quality: per-question answers with every judge sample, unmeasured judgements counted,
the regression gate on answers (fails on answers given the wrong context, passes on a rerun of the
same configuration), reruns without duplicates, and the asset without a chat model; against
llama.cpp serving SmolLM2-135M (tests/llm_server.py) and a scripted OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from orchestration.commands import _format_answers
from ragline.config import ConfigError, Settings
from ragline.evaluation.answer_scoring import (
    ANSWER_SCORES_HAVE_NOT_REGRESSED,
    NO_CHAT_MODEL,
    answer_gate_outcome,
    latest_answer_comparisons,
    latest_answer_scores,
    score_answers,
)
from ragline.evaluation.judge import Judge, JudgeSettings
from ragline.llm import ChatClient
from ragline.storage.db import Database
from tests.conftest import (
    EXAMPLES,
    REPO,
    drop_database,
    fresh_database,
    local_embedder,
    quality_board,
    run,
    write_project,
)
from tests.llm_server import MODEL_NAME
from tests.openai_server import EmbeddingsServer

FILES = ["paid-time-off.md", "expenses-and-travel.md", "meeting-norms.md"]
QUESTIONS = ("q001", "q002", "q003")
DAY1, DAY2, DAY3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)
JUDGED = ("correctness",)
GATED = ("correctness", "token_f1", "embedding_cosine")
# Two judge samples of a few tokens: the protocol, not SmolLM2's judgement, is under test.
JUDGE = JudgeSettings(samples=2, max_tokens=16)
ANSWER_REPLY = "You get 25 days of annual leave [1]."


def _config(root: Path, llm: dict[str, Any] | None, **evaluation: Any) -> Settings:
    sources = [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}]
    extra: dict[str, Any] = {
        # Short prompts: reading the prompt is most of SmolLM2's time on one shared core.
        "answer": {"max_tokens": 24, "context_tokens": 120},
        "eval_sets": [{"name": "golden", "kind": "golden", "path": "golden.jsonl"}],
        "variants": [{"name": "hybrid", "strategy": "hybrid"}],
        "answer_evaluation": {
            "variants": [{"name": "main"}],
            "metrics": [*JUDGED, "exact_match", "token_f1", "embedding_cosine"],
            "gate_metrics": list(GATED),
            "pairwise": False,
            "min_questions": 3,  # the three golden questions of this corpus
            **evaluation,
        },
    }
    if llm is not None:
        extra["llm"] = llm
    return write_project(root, sources, **extra)


@pytest.fixture(scope="module")
def corpus(
    server_url: str, tmp_path_factory: pytest.TempPathFactory, llm_url: str
) -> Iterator[dict[str, Any]]:
    """Three handbook pages and their three golden questions materialized in a fresh database."""
    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    root = tmp_path_factory.mktemp("answer_quality")
    (root / "corpus" / "handbook").mkdir(parents=True)
    for file in FILES:
        shutil.copy(EXAMPLES / "handbook" / file, root / "corpus" / "handbook" / file)
    lines = (REPO / "examples" / "golden" / "questions.jsonl").read_text().splitlines()
    (root / "golden.jsonl").write_text(
        "\n".join(line for line in lines if line and json.loads(line)["id"] in QUESTIONS) + "\n"
    )
    llm = {"model": MODEL_NAME, "base_url": llm_url, "context_window": 2048, "max_retries": 0}
    settings = _config(root, llm)
    run(settings, quality=False)
    db = Database(url, max_size=2)
    judge = Judge(ChatClient(base_url=llm_url, model=MODEL_NAME, api_key=None, max_retries=0), JUDGE, db)
    yield {"url": url, "root": root, "settings": settings, "db": db, "judge": judge, "llm": llm}
    db.close()
    mp.undo()
    drop_database(server_url, name)


def _score(corpus: dict[str, Any], day: dt.date, settings: Settings | None = None, judge: Any = None):
    return score_answers(
        corpus["db"], settings or corpus["settings"], local_embedder(), judge or corpus["judge"], day
    )


def _with_context(settings: Settings, context: str) -> Settings:
    ae = settings.answer_evaluation
    variants = tuple(dataclasses.replace(v, context=context) for v in ae.variants)
    return dataclasses.replace(settings, answer_evaluation=dataclasses.replace(ae, variants=variants))


def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _counts(url: str) -> dict[str, int]:
    tables = ("answer_results", "answer_metric_results", "answer_scores", "answer_comparisons")
    return {t: _rows(url, f"SELECT count(*) AS n FROM ragline.{t}")[0]["n"] for t in tables}


def test_answers_are_stored_per_question_with_every_judge_sample(corpus: dict[str, Any]) -> None:
    """Three answers with their context as judged; each judge metric keeps both samples (or why a
    sample is missing), each similarity metric its value; the aggregates count what was measured;
    a first partition has nothing to compare with: not tested, never green."""
    scores = _score(corpus, DAY1)
    url = corpus["url"]
    answers = _rows(url, "SELECT * FROM ragline.answer_results WHERE partition = %s", DAY1)
    assert sorted(a["question_id"] for a in answers) == list(QUESTIONS)
    answered = [a for a in answers if not a["abstained"]]
    assert answered and all(a["context"] and a["context_chunk_ids"] for a in answered)
    assert all(
        [c["chunk_id"] for c in a["context"]] == a["context_chunk_ids"]
        and all(c["text"] for c in a["context"])
        for a in answered
    )
    metrics = _rows(url, "SELECT * FROM ragline.answer_metric_results WHERE partition = %s", DAY1)
    assert len(metrics) == 3 * (len(JUDGED) + 3)
    for m in metrics:
        if m["kind"] == "judge":
            assert len(m["samples"]) == 2 and len(m["reasons"]) == 2, m
            assert m["unmeasured"] == sum(s is None for s in m["samples"])
            assert all(bool(r) == (s is None) for s, r in zip(m["samples"], m["reasons"], strict=True))
        else:
            assert m["samples"] == [m["mean"]] and 0 <= m["mean"] <= 1
    stored = _rows(url, "SELECT * FROM ragline.answer_scores WHERE partition = %s", DAY1)
    assert {s["metric"] for s in stored} == {*JUDGED, "exact_match", "token_f1", "embedding_cosine"}
    for s in stored:
        assert s["questions"] == 3 and s["measured"] + s["unmeasured"] == 3
        assert s["config"]["prompt"] == "answer@1" and s["config"]["retrieval_variant"] == "hybrid"
        assert s["gate_passed"] is None
    assert scores.judge_samples == 3 * 2 * len(JUDGED)
    outcome = answer_gate_outcome(scores.gates, corpus["settings"], DAY1)
    assert outcome.name == ANSWER_SCORES_HAVE_NOT_REGRESSED
    assert outcome.untested and outcome.untested.startswith("compared 0: first scored partition")


def test_gate_fails_on_answers_from_the_wrong_context_and_passes_on_a_rerun(corpus: dict[str, Any]) -> None:
    """Day 2 answers each question from another question's context (the negative control): a real
    drop, the gate fails. Day 3 reruns day 1's configuration: compared with day 1 (day 2 failed),
    the same answers and judgements, no drop: it passes. Status shows the scores and the gate."""
    url, settings = corpus["url"], corpus["settings"]
    if not _rows(url, "SELECT 1 FROM ragline.answer_scores WHERE partition = %s", DAY1):
        _score(corpus, DAY1)
    degraded = _score(corpus, DAY2, _with_context(settings, "other_question"))
    outcome = answer_gate_outcome(degraded.gates, settings, DAY2)
    assert not outcome.untested and not outcome.passed, outcome.metadata
    assert outcome.metadata["regressions"] != "none"
    # On call: the board and `ragline status` show the regressed metric with its interval.
    with psycopg.connect(url) as conn:
        quality = {
            "answers": latest_answer_scores(conn),
            "answer_comparisons": latest_answer_comparisons(conn),
        }
    page = quality_board(quality)
    assert 'id="answers"' in page and "answers <b>regressed</b>" in page
    status = "\n".join(_format_answers(quality))
    assert "answer scores (2026-11-02; change since 2026-11-01)" in status and " worse" in status
    moved = _rows(
        url,
        "SELECT a.question_id, a.context_chunk_ids AS wrong, b.context_chunk_ids AS own "
        "FROM ragline.answer_results a JOIN ragline.answer_results b USING (eval_set, variant, question_id) "
        "WHERE a.partition = %s AND b.partition = %s",
        DAY2,
        DAY1,
    )
    assert all(r["wrong"] != r["own"] for r in moved if r["own"])
    # ragline.answers keeps the question that was asked, not the one whose context was fed in.
    stored = _rows(
        url,
        "SELECT r.question, a.question AS stored FROM ragline.answer_results r "
        "JOIN ragline.answers a USING (answer_id) WHERE r.partition = %s",
        DAY2,
    )
    assert stored and all(r["stored"] == r["question"] for r in stored)
    rerun = _score(corpus, DAY3)
    outcome = answer_gate_outcome(rerun.gates, settings, DAY3)
    assert outcome.passed and not outcome.untested, outcome.metadata
    assert outcome.metadata["compared"] == len(GATED)
    assert {g.comparison.baseline for g in rerun.gates} == {DAY1.isoformat()}
    with psycopg.connect(url) as conn:
        latest = latest_answer_scores(conn)
    assert {r["partition"] for r in latest} == {DAY3.isoformat()}
    gated = [r for r in latest if r["metric"] in GATED]
    assert all(r["gate_baseline"] == DAY1.isoformat() and r["gate_verdict"] for r in gated)
    assert all(r["previous"] == DAY2.isoformat() for r in latest)


def test_a_rerun_of_a_partition_replaces_its_rows(corpus: dict[str, Any]) -> None:
    """Scoring a partition again stores the same number of rows: nothing duplicated, nothing lost."""
    url, day = corpus["url"], dt.date(2026, 11, 20)
    with (
        EmbeddingsServer(chat_replies=[ANSWER_REPLY]) as answers,
        EmbeddingsServer(chat_replies=[JUDGE_REPLY]) as judging,
    ):
        settings = _project(corpus, "rerun", answers.base_url)
        judge = Judge(_client(judging), JUDGE, corpus["db"])
        _score(corpus, day, settings, judge)
        before = _counts(url)
        _score(corpus, day, settings, judge)
    assert _counts(url) == before
    assert len(_rows(url, "SELECT 1 FROM ragline.answer_results WHERE partition = %s", day)) == 3


def _client(server: EmbeddingsServer) -> ChatClient:
    return ChatClient(base_url=server.base_url, model="scripted", api_key=None, max_retries=0)


def _project(corpus: dict[str, Any], name: str, llm_url: str | None, **evaluation: Any) -> Settings:
    """The same corpus and eval set (and database) under another ragline.yaml: its llm: block
    answers (and judges) from llm_url (none: no chat model)."""
    root = corpus["root"] / name
    root.mkdir()
    for item in ("corpus", "golden.jsonl"):
        (root / item).symlink_to(corpus["root"] / item)
    llm = {"model": "scripted", "base_url": llm_url, "max_retries": 0} if llm_url else None
    return _config(root, llm, **evaluation)


def test_failed_judgements_are_counted_as_unmeasured(corpus: dict[str, Any]) -> None:
    """A judge endpoint that fails its first calls and then replies: the failed samples are stored
    as null with their reason, counted per question and per metric, never averaged as 0."""
    day = dt.date(2026, 11, 10)
    with (
        EmbeddingsServer(chat_replies=[ANSWER_REPLY]) as answers,
        EmbeddingsServer(fail_first=[500] * 4, chat_replies=[JUDGE_REPLY]) as judging,
    ):
        judge = Judge(_client(judging), dataclasses.replace(JUDGE, cache=False), corpus["db"])
        scores = _score(corpus, day, _project(corpus, "unmeasured", answers.base_url), judge)
    url = corpus["url"]
    metrics = _rows(
        url, "SELECT * FROM ragline.answer_metric_results WHERE partition = %s AND kind = 'judge'", day
    )
    unmeasured = sum(m["unmeasured"] for m in metrics)
    assert unmeasured == 4
    failed = [m for m in metrics if m["unmeasured"]]
    assert all(r for m in failed for s, r in zip(m["samples"], m["reasons"], strict=True) if s is None)
    measured = [s for m in metrics for s in m["samples"] if s is not None]
    assert measured, "the calls after the failures were measured"
    stored = {
        s["metric"]: s for s in _rows(url, "SELECT * FROM ragline.answer_scores WHERE partition = %s", day)
    }
    for metric in JUDGED:
        whole = [m for m in metrics if m["metric"] == metric and m["mean"] is None]
        assert stored[metric]["unmeasured"] == len(whole)
        assert stored[metric]["measured"] + stored[metric]["unmeasured"] == 3
    assert sum(s.unmeasured for _v, _n, s in scores.scores) == sum(stored[m]["unmeasured"] for m in JUDGED)
    # Unmeasured samples reach on-call: stored beside the scores, shown by the asset, status, the board.
    whole = stored["correctness"]["unmeasured"]
    shown = f"4 of 6 samples ({whole} of 3 questions)"
    assert stored["correctness"]["config"]["samples"] == {"total": 6, "unmeasured": 4}
    from assets.answer_quality import score_markdown

    assert f"| {shown} |" in score_markdown(scores)
    row = {
        **stored["correctness"],
        "samples": stored["correctness"]["config"]["samples"],
        "partition": day.isoformat(),
        "previous": None,
        "delta": None,
        "gate_diff": None,
        "gate_details": {},
        "gate_verdict": None,
    }
    assert shown in "\n".join(_format_answers({"answers": [row]}))
    page = quality_board({"answers": [row]})
    assert shown in page


# What the scripted judge endpoint replies after its failures: a parseable grade (correctness@1).
JUDGE_REPLY = '{"score": 3}'


def _materialize(settings: Settings) -> dg.ExecuteInProcessResult:
    """The answer_scores asset alone, in process, on the project's last daily partition."""
    from assets.answer_quality import answer_scores_asset
    from orchestration.automation import FOLLOW_UPSTREAM
    from orchestration.partitions import daily_partitions
    from orchestration.resources import EmbedderResource, RaglineResource

    days = daily_partitions(settings)
    return dg.materialize(
        [answer_scores_asset(days, FOLLOW_UPSTREAM)],
        partition_key=days.get_last_partition_key(),
        resources={
            "ragline": RaglineResource(config_path=str(settings.path), start_embedded=False),
            "embedder": EmbedderResource(),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_without_a_chat_model_the_asset_skips_and_the_gate_is_not_tested(corpus: dict[str, Any]) -> None:
    """No llm: or models: block: the asset materializes as skipped and its check is NOT TESTED (a
    failed WARN result with the reason), never green."""
    result = _materialize(_project(corpus, "no_llm", None))
    [mat] = result.asset_materializations_for_node("answer_scores")
    assert mat.metadata["skipped"].value == NO_CHAT_MODEL
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == ANSWER_SCORES_HAVE_NOT_REGRESSED and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["not_tested"].value == NO_CHAT_MODEL


def test_the_asset_scores_judges_and_gates_through_dagster(corpus: dict[str, Any]) -> None:
    """The asset with a chat model (a scripted endpoint that answers and judges): metered calls,
    the score, A/B and gate tables in its metadata, and its check (a first partition: not tested)."""
    with EmbeddingsServer(chat_replies=[JUDGE_REPLY]) as server:
        settings = _project(
            corpus,
            "asset",
            server.base_url,
            variants=[{"name": "scripted"}, {"name": "other", "prompt": "answer@1"}],
        )
        result = _materialize(settings)
    [mat] = result.asset_materializations_for_node("answer_scores")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["dagster/row_count"] == 6  # two variants x three questions
    assert "| scripted / golden | correctness |" in meta["scores"]
    # pairwise: false: one pointwise row per metric for the candidate against the control, no preference.
    ab = [line.split(" | ")[:2] for line in meta["ab"].splitlines()[2:]]
    assert ab == [["| other vs scripted / golden", m] for m in settings.answer_evaluation.metrics]
    assert "first scored partition" in meta["gate"]
    assert meta["judge_samples"] > 0 and meta["model_calls"] > 0
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == ANSWER_SCORES_HAVE_NOT_REGRESSED and not check.passed
    assert check.metadata["not_tested"].value.startswith("compared 0: first scored partition")


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"variants": [{"name": "a", "retrieval": "nope"}]}, "'nope'"),
        ({"variants": [{"name": "a", "model": "bigger"}]}, "'bigger'"),
        ({"variants": [{"name": "a", "context": "random"}]}, "'random'"),
        ({"metrics": ["token_f1"], "gate_metrics": ["correctness"]}, "correctness"),
        ({"eval_sets": ["missing"]}, "missing"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_answer_evaluation_config_errors_name_what_is_wrong(
    tmp_path: Path, block: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        _config(tmp_path, {"model": "m", "base_url": "http://127.0.0.1:9/v1"}, **block)


def test_the_annotation_queue_copies_what_score_answers_stored(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """Human evaluation over real scored answers (the input contract of annotation_queue): every
    answer of the last scored day is queued with a copy of its texts and scores, a label on it is
    stored, and the approved answer is promoted into a golden file that load_golden reads."""
    from ragline.answer.citations import cited_numbers
    from ragline.config import AnnotationSettings
    from ragline.evaluation import annotation
    from ragline.evaluation.eval_sets import load_golden

    url = corpus["url"]
    # A day answered by one variant only (the asset's day has two): one answer per question id.
    one = "SELECT max(partition) AS day FROM ragline.answer_results WHERE variant = 'main'"
    [day] = [r["day"] for r in _rows(url, one)]
    answers = {
        r["question_id"]: r
        for r in _rows(url, "SELECT * FROM ragline.answer_results WHERE partition = %s", day)
    }
    metrics = _rows(url, "SELECT * FROM ragline.answer_metric_results WHERE partition = %s", day)
    with psycopg.connect(url, autocommit=True) as conn:
        # A control sample as large as the day: every answer is queued, whatever the judge said.
        settings = AnnotationSettings(random_count=len(answers), queue_size=len(answers))
        stored = annotation.store_queue(conn, annotation.select_queue(conn, day, settings))
        assert sorted(i.question_id for _id, i in stored) == sorted(answers)
        for _item_id, item in stored:
            a = answers[item.question_id]
            assert (item.question, item.answer, item.reference, item.context) == (
                a["question"],
                a["answer"],
                a["reference"],
                a["context"],
            )
            mine = {m["metric"]: m for m in metrics if m["question_id"] == item.question_id}
            assert item.judge["correctness"]["mean"] == mine["correctness"]["mean"]
            assert item.similarity["token_f1"] == mine["token_f1"]["mean"]
        # Promotion: an answer that cites a passage of its context is promoted (its cited documents
        # relevant); an abstention or an uncited answer is refused, never written.
        item_id, item = next((i, q) for i, q in stored if q.context)
        annotation.save_label(
            conn, annotation.make_label(item_id, "tester", faithful="yes", correct="yes", source="cli")
        )
        golden = tmp_path / "human.jsonl"
        numbers = {p.get("number") for p in item.context}
        if not (item.answer.strip() and set(cited_numbers(item.answer)) & numbers):
            with pytest.raises(annotation.AnnotationError, match="its answer (is empty|cites no document)"):
                annotation.promote(conn, golden, [item_id])
            assert not golden.exists()
            return
        assert [line["question"] for line in annotation.promote(conn, golden).written] == [item.question]
    loaded = load_golden(golden, "human")
    assert loaded.rejected == [] and [q.question for q in loaded.questions] == [item.question]


def test_the_gate_is_not_tested_when_the_judge_compared_nothing(tmp_path: Path) -> None:
    """Similarity metrics unchanged but correctness compared on no question (the judge measured
    nothing): NOT TESTED naming the metric and variant/set, never green; a real drop still fails."""
    from ragline.evaluation.answer_scoring import MetricComparison
    from ragline.evaluation.metrics import paired_bootstrap
    from ragline.evaluation.scoring import Comparison

    settings = _config(tmp_path, {"model": "m", "base_url": "http://127.0.0.1:9/v1"})
    same = paired_bootstrap([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    gates = [
        MetricComparison(
            "correctness", Comparison(DAY1.isoformat(), "main", "golden", None, "none measured")
        ),
        MetricComparison("token_f1", Comparison(DAY1.isoformat(), "main", "golden", same)),
        MetricComparison("embedding_cosine", Comparison(DAY1.isoformat(), "main", "golden", same)),
    ]
    outcome = answer_gate_outcome(gates, settings, DAY2)
    assert outcome.untested == "judge metrics not compared: correctness on main/golden", outcome.metadata
    drop = paired_bootstrap([0.9, 0.8, 0.9], [0.1, 0.2, 0.1])
    gates[1] = MetricComparison(
        "token_f1", Comparison(DAY1.isoformat(), "main", "golden", drop, min_effect=0.05)
    )
    outcome = answer_gate_outcome(gates, settings, DAY2)
    assert not outcome.passed and outcome.untested is None


def test_the_negative_control_never_touches_the_answer_cache(corpus: dict[str, Any]) -> None:
    """With the semantic cache on, the control (another question's context) is never served a
    cached answer and stores none in ragline.answer_cache."""
    url, day = corpus["url"], dt.date(2026, 11, 21)
    with (
        EmbeddingsServer(chat_replies=[ANSWER_REPLY]) as answers,
        EmbeddingsServer(chat_replies=[JUDGE_REPLY]) as judging,
    ):
        settings = _project(corpus, "control_cache", answers.base_url)
        settings = dataclasses.replace(
            settings, cache=dataclasses.replace(settings.cache, semantic=True, semantic_threshold=0.0)
        )
        judge = Judge(_client(judging), JUDGE, corpus["db"])
        _score(corpus, day, settings, judge)  # fills the cache with the real questions' answers
        before = _rows(url, "SELECT count(*) AS n FROM ragline.answer_cache")[0]["n"]
        control = _score(corpus, day, _with_context(settings, "other_question"), judge)
    assert before > 0 and control.answers_cached == 0
    assert _rows(url, "SELECT count(*) AS n FROM ragline.answer_cache")[0]["n"] == before


def test_pairwise_counts_the_pairs_where_an_answer_failed(tmp_path: Path) -> None:
    """A/B pairs where either answer failed are counted (failed) and shown, not silently dropped."""
    from ragline.evaluation.answer_scoring import QuestionAnswer, pairwise_ab

    def qa(qid: str, failed: str = "") -> QuestionAnswer:
        return QuestionAnswer(qid, "h", "q?", "ref", "" if failed else "a", False, None, [], failed=failed)

    settings = _config(tmp_path, {"model": "m", "base_url": "http://127.0.0.1:9/v1"})
    unreachable = ChatClient(base_url="http://127.0.0.1:9/v1", model="m", api_key=None, max_retries=0)
    p, samples, _cached = pairwise_ab(
        Judge(unreachable, JUDGE),
        "golden",
        "main",
        "other",
        [qa("q1", "the answer failed: 500"), qa("q2")],
        [qa("q1"), qa("q2", "the answer failed: timeout")],
        settings.evaluation,
    )
    assert samples == 0 and p.details["failed"] == 2 and p.verdict == "not compared"
    from assets.answer_quality import ab_markdown
    from ragline.evaluation.answer_scoring import AnswerDayScores

    assert "| not compared (2 failed answer pairs not judged) |" in ab_markdown(AnswerDayScores(pairwise=[p]))


def test_a_changed_reference_answer_is_never_paired_with_the_old() -> None:
    """The answer tables' question hash covers the reference: the gate and the A/B pair a question
    only with the same question, relevance judgements and reference answer."""
    from ragline.evaluation.answer_scoring import _answer_row
    from ragline.evaluation.eval_sets import EvalQuestion

    old = EvalQuestion("q1", "How many days of leave?", {"pto.md": 1.0}, answer="25 days.")
    new = dataclasses.replace(old, answer="30 days.")
    keys = {_answer_row(q, "a", False, None, []).key for q in (old, new)}
    assert len(keys) == 2
    assert _answer_row(old, "a", False, None, []).key == _answer_row(old, "b", False, None, []).key


def test_citation_markers_do_not_count_against_similarity() -> None:
    """An answer that cites its passages ([1], [1, 2]) matches a reference without markers."""
    from ragline.evaluation.answer_scoring import _answer_row, similarity_values
    from ragline.evaluation.eval_sets import EvalQuestion

    q = EvalQuestion("q1", "How many days of leave?", {}, answer="You get 25 days of annual leave.")
    qa = _answer_row(q, "You get 25 days of annual leave [1, 2].", False, None, [])
    similarity_values(local_embedder(), qa, ["exact_match", "token_f1", "rouge_l"])
    assert {m: v.mean for m, v in qa.metrics.items()} == {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0}


def test_judge_noise_between_days_does_not_fail_the_gate(corpus: dict[str, Any]) -> None:
    """The same answers on two days, judged by an endpoint whose grades vary at random (seeded, the
    same distribution both days, judge cache off): the per-question means differ by chance, the
    two-level bootstrap (questions, then each question's samples) sees noise: the gate passes.
    With these grades a bootstrap over the question means alone flags a drop."""
    rng = random.Random(32)
    grades = [json.dumps({"score": rng.randint(1, 4)}) for _ in range(12)]
    days = (dt.date(2026, 11, 25), dt.date(2026, 11, 26))
    with EmbeddingsServer(chat_replies=[ANSWER_REPLY]) as answers:
        settings = _project(corpus, "noisy", answers.base_url, variants=[{"name": "noisy"}])
        for day, replies in zip(days, (grades[:6], grades[6:]), strict=True):
            with EmbeddingsServer(chat_replies=replies) as judging:
                judge = Judge(_client(judging), dataclasses.replace(JUDGE, cache=False), corpus["db"])
                scores = _score(corpus, day, settings, judge)
    [correctness] = [g for g in scores.gates if g.metric == "correctness"]
    r = correctness.comparison.result
    assert r is not None and r.n == 3 and r.mean_diff < -0.05, r  # the means moved by chance
    outcome = answer_gate_outcome(scores.gates, settings, days[1])
    assert outcome.passed and not outcome.untested, outcome.metadata


def test_a_metric_with_fewer_paired_questions_than_min_questions_is_not_compared(tmp_path: Path) -> None:
    """Three paired questions with min_questions 5: not compared, the reason says why."""
    from ragline.evaluation.answer_scoring import paired

    settings = _config(tmp_path, {"model": "m", "base_url": "http://127.0.0.1:9/v1"})
    m = paired(
        {"a": 0.9, "b": 0.9, "c": 0.9},
        {"a": 0.1, "b": 0.1, "c": 0.1},
        metric="token_f1",
        labels=("2026-11-01", "main"),
        eval_set="golden",
        settings=settings.evaluation,
        min_questions=5,
    )
    assert m.comparison.result is None
    assert m.comparison.reason == "3 questions paired, fewer than answer_evaluation.min_questions (5)"
