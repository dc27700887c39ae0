"""Retrieval on the materialized demo corpus: strategies, filters, MMR, reranking, the query log,
BM25 arithmetic, context assembly and the LlamaIndex adapter."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from dataclasses import replace

import psycopg
import pytest

from ragline.config import RETRIEVAL_STRATEGIES, VariantSettings
from ragline.evaluation.eval_sets import load_golden
from ragline.evaluation.scoring import evaluate, summarize
from ragline.retrieval.context import assemble_context, long_context_order, tokenizer_for
from ragline.retrieval.reranking import MaxSimReranker
from ragline.retrieval.search import Retriever, build_retriever, reciprocal_rank_fusion
from ragline.storage.db import Database
from ragline.types import Filters, RetrievalError
from tests.conftest import EXAMPLES, REPO, local_embedder, run, write_project

VACATION = "How many vacation days do I get per year?"


@pytest.fixture(scope="module")
def db(demo):
    database = Database(demo["url"], max_size=2)
    yield database
    database.close()


@pytest.fixture(scope="module")
def retriever(demo, db):
    return build_retriever(demo["settings"], db, local_embedder())


def query_log(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT query, strategy, k, results, latency_ms, caller, model_id, vector_dims(embedding) "
            "FROM ragline.query_log ORDER BY query_id"
        ).fetchall()


def test_every_strategy_returns_k_ranked_cited_hits(retriever):
    for strategy in RETRIEVAL_STRATEGIES:
        result = retriever.search(VACATION, strategy=strategy, k=5, log=False)
        hits = result.hits
        assert len(hits) == 5 and len({h.chunk_id for h in hits}) == 5, strategy
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), strategy
        assert hits[0].document == "handbook:paid-time-off.md", strategy
        assert hits[0].citation.startswith("handbook/paid-time-off.md chars ")
        assert result.latency_ms > 0 and strategy in result.strategy


def test_hybrid_is_at_least_as_good_as_the_better_single_strategy(demo, db, capsys):
    """On the demo golden set; the figures are printed (pytest -s) and quoted in the README."""
    settings = demo["settings"]
    golden = load_golden(REPO / "examples/golden/questions.jsonl", "golden").questions
    scores = {}
    for strategy in RETRIEVAL_STRATEGIES:
        variant = VariantSettings(strategy, replace(settings.retrieval, strategy=strategy))
        results = evaluate(build_retriever(settings, db, local_embedder(), variant=variant), golden, k=10)
        scores[strategy] = summarize(results, 10)
    with capsys.disabled():
        print("\ngolden set nDCG@10 / recall@10 / MRR:")
        for name, s in scores.items():
            print(f"  {name:<8} {s.ndcg:.4f} / {s.recall:.4f} / {s.mrr:.4f}")
    assert scores["hybrid"].ndcg >= max(scores["dense"].ndcg, scores["lexical"].ndcg)
    assert scores["hybrid"].recall >= max(scores["dense"].recall, scores["lexical"].recall)


def test_filters_restrict_every_strategy_and_still_fill_k(retriever):
    tickets = [json.loads(line) for line in (EXAMPLES / "support/tickets.jsonl").read_text().splitlines()]
    high = {f"support:tickets.jsonl#{t['ticket_id']}" for t in tickets if t["priority"] == "high"}
    assert 0 < len(high) < len(tickets)
    for strategy in RETRIEVAL_STRATEGIES:
        only_policies = retriever.search(
            "data retention", strategy=strategy, k=10, log=False, filters=Filters.of(sources=["policies"])
        )
        assert len(only_policies.hits) == 10 and {h.source for h in only_policies.hits} == {"policies"}
        by_metadata = retriever.search(
            "cannot sign in with SSO",
            strategy=strategy,
            k=5,
            log=False,
            filters=Filters.of(metadata={"priority": "high"}),
        )
        assert by_metadata.hits and {h.document for h in by_metadata.hits} <= high, strategy
        one_doc = retriever.search(
            "hotel", strategy=strategy, k=3, log=False, filters=Filters.of(doc_ids=["expenses-and-travel.md"])
        )
        assert {h.doc_id for h in one_doc.hits} == {"expenses-and-travel.md"}


def test_mmr_trades_relevance_for_diversity(retriever):
    plain = retriever.search(VACATION, strategy="dense", k=5, log=False)
    diverse = retriever.search(VACATION, strategy="dense", k=5, log=False, mmr_lambda=0.3)
    assert diverse.hits[0].chunk_id == plain.hits[0].chunk_id  # the best hit is still picked first
    assert len({h.document for h in diverse.hits}) > len({h.document for h in plain.hits})
    assert "mmr" in diverse.timings_ms
    lexical = retriever.search(VACATION, strategy="lexical", k=5, log=False)
    kept = retriever.search(VACATION, strategy="lexical", k=5, log=False, mmr_lambda=1.0)
    assert [h.chunk_id for h in kept.hits] == [h.chunk_id for h in lexical.hits]  # MMR ranks by BM25 here


def test_maxsim_reranker_reorders_the_first_stage_candidates(demo, db):
    settings = demo["settings"]
    base = build_retriever(settings, db, local_embedder())
    reranked = build_retriever(settings, db, local_embedder())
    reranked.reranker = MaxSimReranker(local_embedder())
    question = "What is the nightly hotel cap in London?"
    first = base.search(question, k=settings.retrieval.rerank_candidates, log=False)
    second = reranked.search(question, k=5, log=False)
    assert {h.chunk_id for h in second.hits} <= {h.chunk_id for h in first.hits}
    assert [h.score for h in second.hits] == sorted((h.score for h in second.hits), reverse=True)
    assert "$325" in second.hits[0].text and "rerank" in second.timings_ms


def test_queries_are_logged_unless_switched_off(demo, db, retriever):
    before = len(query_log(demo["url"]))
    result = retriever.search("Who approves business class flights?", k=4)
    retriever.search("not logged", k=4, log=False)
    quiet = build_retriever(
        replace(demo["settings"], retrieval=replace(demo["settings"].retrieval, log_queries=False)),
        db,
        local_embedder(),
    )
    quiet.search("not logged either", k=4)
    rows = query_log(demo["url"])[before:]
    assert len(rows) == 1
    text, strategy, k, results, latency, caller, model_id, dims = rows[0]
    assert (text, strategy, k, caller) == ("Who approves business class flights?", "hybrid", 4, "python")
    assert [r["chunk_id"] for r in results] == [h.chunk_id for h in result.hits]
    assert (
        latency == pytest.approx(result.latency_ms) and model_id == local_embedder().model_id and dims == 384
    )
    assert result.query_id is not None


def test_bad_queries_are_clear_errors(retriever):
    with pytest.raises(RetrievalError, match="empty"):
        retriever.search("   ")
    with pytest.raises(RetrievalError, match="unknown strategy"):
        retriever.search("x", strategy="fuzzy")
    with pytest.raises(RetrievalError, match="no reranker"):
        retriever.search("x", rerank=True)


def test_reciprocal_rank_fusion_weights(retriever):
    dense = retriever.search(VACATION, strategy="dense", k=3, log=False).hits
    lexical = retriever.search(VACATION, strategy="lexical", k=3, log=False).hits
    fused = reciprocal_rank_fusion([dense, lexical], [1.0, 0.0], rrf_k=60)
    assert [h.chunk_id for h in fused[:3]] == [h.chunk_id for h in dense]
    both = reciprocal_rank_fusion([dense, lexical], [1.0, 1.0], rrf_k=60)
    top = both[0]
    expected = sum(
        1 / (60 + r) for lst in (dense, lexical) for r, h in enumerate(lst, 1) if h.chunk_id == top.chunk_id
    )
    assert top.score == pytest.approx(expected)
    # Only the best `limit` fused hits (what a hybrid search without reranking or MMR keeps).
    assert reciprocal_rank_fusion([dense, lexical], [1.0, 1.0], rrf_k=60, limit=2) == both[:2]


SCAN_SETTINGS = (
    "SELECT current_setting('hnsw.ef_search', true), current_setting('hnsw.iterative_scan', true), "
    "current_setting('plan_cache_mode')"
)
DEFAULT_SCAN_SETTINGS = {("", "off", "auto"), ("40", "off", "auto")}


def test_a_dense_searchs_scan_settings_reach_it_and_end_with_it(retriever, db, monkeypatch):
    """The search's own connection has its scan settings after the index scan's fetches, and has the
    defaults again once the search is over, also inside a transaction the caller holds open."""
    seen: list[tuple] = []
    widening = Retriever._widening

    def widening_then_read(conn: psycopg.Connection, *args, **kwargs):
        rows = widening(conn, *args, **kwargs)
        seen.append(conn.execute(SCAN_SETTINGS).fetchone())
        return rows

    monkeypatch.setattr(Retriever, "_widening", staticmethod(widening_then_read))
    qvec = local_embedder().embed([VACATION])[0]
    with db.connection() as conn:
        wide = retriever.dense(conn, qvec, 60, Filters())
        assert len(wide) == 60 and len({h.chunk_id for h in wide}) == 60
        assert seen == [("60", "relaxed_order", "force_generic_plan")]
        assert conn.execute(SCAN_SETTINGS).fetchone() in DEFAULT_SCAN_SETTINGS
        filtered = retriever.dense(conn, qvec, 5, Filters.of(sources=["policies"]))
        assert {h.source for h in filtered} == {"policies"}
        assert seen[-1] == ("40", "relaxed_order", "auto")  # custom plans see the filter values
        assert conn.execute(SCAN_SETTINGS).fetchone() in DEFAULT_SCAN_SETTINGS
        with conn.transaction():
            again = retriever.dense(conn, qvec, 60, Filters())
            assert seen[-1] == ("60", "relaxed_order", "force_generic_plan")
            assert conn.execute(SCAN_SETTINGS).fetchone() in DEFAULT_SCAN_SETTINGS
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert [h.chunk_id for h in again] == [h.chunk_id for h in wide]


def test_bm25_matches_the_formula_and_follows_chunk_changes(tmp_path, db_url):
    """Three one-chunk documents; the scores are Okapi BM25 (k1 1.2, b 0.75) worked by hand."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("apple apple banana")  # lexemes: appl x2, banana -> length 3
    (corpus / "b.txt").write_text("apple cherry")  # appl, cherri -> length 2
    (corpus / "c.txt").write_text("cherry cherry cherry date")  # cherri x3, date -> length 4
    settings = write_project(tmp_path, [{"name": "fruit", "root": "corpus", "chunking": {"min_tokens": 0}}])
    assert all(r.success for r in run(settings).values())
    with Database(db_url, max_size=1) as database:
        r = build_retriever(settings, database, local_embedder())
        scores = {h.doc_id: h.score for h in r.search("apple", strategy="lexical", k=5, log=False).hits}
        # N = 3, avgdl = 3, df(appl) = 2: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6)
        idf = math.log(1.6)
        a = idf * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 3))  # tf 2, length 3
        b = idf * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 3))  # tf 1, length 2
        assert scores == pytest.approx({"a.txt": a, "b.txt": b})
        (corpus / "c.txt").unlink()
        assert all(res.success for res in run(settings).values())
        with database.connection() as conn:
            texts, postings = conn.execute(
                "SELECT (SELECT count(*) FROM ragline.lexical_texts), "
                "(SELECT count(*) FROM ragline.lexical_postings)"
            ).fetchone()
        assert (texts, postings) == (2, 4)  # c's text and its two postings left with its chunk
        scores = {h.doc_id: h.score for h in r.search("apple", strategy="lexical", k=5, log=False).hits}
        # N = 2, avgdl = 2.5, df = 2: idf = ln(1 + 0.5 / 2.5) = ln(1.2)
        a = math.log(1.2) * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2.5))
        assert scores["a.txt"] == pytest.approx(a)


# --- context assembly ------------------------------------------------------------------------------


def test_context_fits_the_budget_in_the_target_models_tokens(retriever):
    hits = retriever.search(VACATION, k=20, log=False).hits
    for name in ("cl100k_base", "minilm"):
        tokenizer = tokenizer_for(name)
        context = assemble_context(hits, budget=300, tokenizer=tokenizer)
        assert 0 < context.tokens <= 300
        assert len(tokenizer.encode(context.text())) <= context.tokens  # markers and separators included
        stored = {h.chunk_id: h.text for h in hits}
        assert all(p.hit.text == stored[p.hit.chunk_id] for p in context.passages)  # never cut
        assert context.dropped.get("over_budget", 0) > 0
    citations = context.citations()
    assert [c["number"] for c in citations] == list(range(1, len(citations) + 1))
    assert all(c["document"] and c["start_char"] is not None for c in citations)


def test_context_drops_duplicates_and_overlaps(retriever):
    hits = retriever.search(VACATION, k=3, log=False).hits
    overlapping = replace(
        hits[0],
        chunk_id="shifted",
        text_hash="other",
        start_char=hits[0].start_char + 5,
        end_char=hits[0].end_char + 5,
    )
    context = assemble_context(
        [hits[0], hits[0], overlapping, *hits[1:]],
        budget=5000,
        tokenizer=tokenizer_for("cl100k_base"),
        order="rank",
    )
    assert [p.hit.chunk_id for p in context.passages] == [h.chunk_id for h in hits]
    assert context.dropped == {"duplicate": 1, "overlap": 1}


def test_context_adds_neighbours_in_document_order(retriever, db):
    hit = retriever.search("What is the nightly hotel cap in London?", k=1, log=False).hits[0]
    with db.connection() as conn:
        context = assemble_context(
            [hit], budget=5000, tokenizer=tokenizer_for("cl100k_base"), conn=conn, neighbours=True
        )
    indexes = [p.hit.chunk_index for p in context.passages]
    assert hit.chunk_index in indexes and len(indexes) == 3
    assert indexes == sorted(indexes) and {p.neighbour_of for p in context.passages} == {None, hit.chunk_id}


def test_long_context_order_puts_the_best_at_the_edges():
    assert long_context_order([1, 2, 3, 4, 5]) == [1, 3, 5, 4, 2]


# --- the CLI and LlamaIndex --------------------------------------------------------------------------


def test_search_and_context_commands(demo, monkeypatch, capsys):
    from ragline.cli import main

    monkeypatch.setenv("DATABASE_URL", demo["url"])
    config = str(REPO / "ragline.yaml")
    before = len(query_log(demo["url"]))
    assert main(["--config", config, "search", VACATION, "--k", "3", "--strategy", "dense", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "dense" and len(out["hits"]) == 3 and out["query_id"]
    assert out["hits"][0]["document"] == "handbook:paid-time-off.md"
    assert query_log(demo["url"])[before:][0][5] == "cli"
    assert main(["--config", config, "search", "refund", "--source", "support", "--no-log"]) == 0
    text = capsys.readouterr().out
    assert "support/tickets.jsonl#" in text and len(query_log(demo["url"])) == before + 1
    assert main(["--config", config, "context", VACATION, "--budget", "250", "--json"]) == 0
    ctx = json.loads(capsys.readouterr().out)
    assert ctx["tokens"] <= 250 and ctx["citations"] and "[1]" in ctx["context"]
    assert main(["--config", config, "search", "x", "--source", "nope"]) == 2
    assert "unknown source 'nope'" in capsys.readouterr().err


def test_llama_index_retriever_adapter(retriever):
    from llama_index.core.base.base_retriever import BaseRetriever

    from ragline.retrieval.llama_index_adapter import RaglineRetriever

    adapter = RaglineRetriever(retriever, k=4, strategy="hybrid")
    assert isinstance(adapter, BaseRetriever)
    nodes = adapter.retrieve(VACATION)
    direct = retriever.search(VACATION, k=4, strategy="hybrid", log=False).hits
    assert [n.node.node_id for n in nodes] == [h.chunk_id for h in direct]
    assert nodes[0].node.metadata["document"] == "handbook:paid-time-off.md"
    assert nodes[0].node.get_content() == direct[0].text and nodes[0].score == pytest.approx(direct[0].score)


class _EmbedsOnceLexicalStarted:
    """The demo's MiniLM, whose embed() first waits (up to 30 s) for a lexical search to start: a
    hybrid search that embeds while its lexical side runs passes through, a serial one waits it out."""

    def __init__(self, model, lexical_started: threading.Event) -> None:
        self.model, self.lexical_started, self.overlapped = model, lexical_started, []
        self.model_id, self.dim, self.max_tokens = model.model_id, model.dim, model.max_tokens

    def embed(self, texts):
        self.overlapped.append(self.lexical_started.wait(timeout=30))
        return self.model.embed(texts)


class _MarksLexicalStart(Retriever):
    """Records the server process each side runs on, and tells the embedder when lexical starts.
    The lexical side then holds its connection until dense has started (up to 30 s), so that the
    two sides are seen at once however fast lexical is."""

    def lexical(self, conn, text, limit, filters):
        self.backends["lexical"] = conn.info.backend_pid
        self.lexical_started.set()
        self.dense_started.wait(timeout=30)
        return super().lexical(conn, text, limit, filters)

    def dense(self, conn, qvec, limit, filters):
        self.backends["dense"] = conn.info.backend_pid
        self.dense_started.set()
        return super().dense(conn, qvec, limit, filters)


def test_concurrent_hybrid_equals_sequential_and_overlaps_the_embedding(demo, db):
    """A third of the golden questions, as served (k 10), wide (k 50) and filtered: the same hits,
    scores and order whether the lexical side runs on its own connection during the embedding or
    after dense."""
    settings = demo["settings"]
    golden = load_golden(REPO / "examples/golden/questions.jsonl", "golden").questions[::3]
    concurrent = build_retriever(settings, db, local_embedder())
    sequential = build_retriever(settings, db, local_embedder())
    sequential.concurrent = False
    support = Filters.of(sources=["support"])
    for q in golden:
        for k, filters in ((10, None), (50, None), (10, support)):
            a = concurrent.search(q.question, k=k, strategy="hybrid", filters=filters, log=False)
            b = sequential.search(q.question, k=k, strategy="hybrid", filters=filters, log=False)
            assert [(h.chunk_id, h.score) for h in a.hits] == [(h.chunk_id, h.score) for h in b.hits]
            assert len(a.hits) == k
    assert {"embed", "dense", "lexical", "wait", "fuse", "total"} <= a.timings_ms.keys()
    assert "wait" not in b.timings_ms

    started = threading.Event()
    embedder = _EmbedsOnceLexicalStarted(local_embedder(), started)
    marked = _MarksLexicalStart(db, embedder, settings.retrieval, ef_search=settings.index.ef_search)
    marked.lexical_started, marked.dense_started, marked.backends = started, threading.Event(), {}
    result = marked.search(VACATION, k=5, log=False)
    assert embedder.overlapped == [True]  # the lexical side had started before the embedding
    assert marked.backends["lexical"] != marked.backends["dense"]  # on a connection of its own
    assert result.hits[0].document == "handbook:paid-time-off.md"


# What the serving path must never load; a subprocess starts from a clean sys.modules.
INGEST_AND_ORCHESTRATION = ("llama_index", "nltk", "great_expectations", "dagster", "pandas", "sqlalchemy")
SERVING_SCRIPT = """
import contextlib, io, json, sys
from ragline.cli import main

def run(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", sys.argv[1], *args, "--no-log", "--json"])
    return code, json.loads(out.getvalue())

def loaded(names):
    return sorted({m.split(".")[0] for m in sys.modules} & set(names))

report = {"lexical": run("search", sys.argv[2], "--strategy", "lexical", "--k", "3")}
report["model_after_lexical"] = loaded(["onnxruntime", "tokenizers"])
report["hybrid"] = run("search", sys.argv[2], "--k", "3")
report["context"] = run("context", sys.argv[2], "--budget", "200")
from ragline.retrieval.search import build_retriever, Retriever, parse_filters  # the Python API
from ragline.retrieval.context import assemble_context
report["forbidden"] = loaded(sys.argv[3].split(","))
print(json.dumps(report))
"""


def test_the_serving_path_imports_neither_ingest_nor_orchestration(demo):
    """`ragline search` (lexical and hybrid), `ragline context` and the Python search API in one
    fresh interpreter on the demo corpus: none of llama-index, nltk, great-expectations, dagster;
    and a lexical search loads no embedding model at all."""
    env = {**os.environ, "DATABASE_URL": demo["url"]}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVING_SCRIPT,
            str(REPO / "ragline.yaml"),
            VACATION,
            ",".join(INGEST_AND_ORCHESTRATION),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["lexical"][0] == 0 and len(report["lexical"][1]["hits"]) == 3
    assert (
        report["hybrid"][0] == 0 and report["hybrid"][1]["hits"][0]["document"] == "handbook:paid-time-off.md"
    )
    assert report["context"][0] == 0 and report["context"][1]["citations"]
    assert report["model_after_lexical"] == []
    assert report["forbidden"] == []
