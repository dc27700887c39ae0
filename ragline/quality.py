"""Data-quality suites (great-expectations) over what a source has stored; one outcome per check."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from ragline.db import query

# Check names: what holds when the check passes. Assets use these as their check keys.
DOCUMENTS_HAVE_TEXT = "documents_have_text"
CHUNKS_HAVE_NO_EMPTY_TEXT = "chunks_have_no_empty_text"
CHUNK_TOKENS_WITHIN_BOUNDS = "chunk_token_counts_within_bounds"
EVERY_LIVE_DOCUMENT_HAS_CHUNKS = "every_live_document_has_chunks"
EMBEDDING_DIMENSIONS_MATCH_MODEL = "embedding_dimensions_match_model"
EMBEDDINGS_ARE_FINITE_UNIT_VECTORS = "embeddings_are_finite_unit_vectors"
EVERY_CURRENT_CHUNK_IS_EMBEDDED = "every_current_chunk_is_embedded"
HNSW_RECALL_AT_10 = "hnsw_recall_at_10_meets_threshold"
EVAL_QUESTIONS_ARE_UNIQUE = "eval_questions_are_unique"
EVAL_REFERENCES_EXIST = "eval_references_exist_in_corpus"
EVAL_LINES_ARE_VALID = "eval_set_lines_are_valid"
NDCG_HAS_NOT_REGRESSED = "ndcg_at_10_has_not_regressed"
CORPUS_HAS_NOT_DRIFTED = "corpus_has_not_drifted"
QUERIES_HAVE_NOT_DRIFTED = "queries_have_not_drifted"

UNIT_NORM_TOLERANCE = 1e-3


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


_context_lock = threading.Lock()
_context: Any = None


def _batch(df: pd.DataFrame):
    global _context
    import great_expectations as gx

    with _context_lock:
        if _context is None:
            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _context = gx.get_context(mode="ephemeral")
            # A tqdm bar per validation would flood the run logs.
            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = _context.data_sources.add_pandas("ragline").add_dataframe_asset("frames")
            asset.add_batch_definition_whole_dataframe("whole")
        definition = _context.data_sources.get("ragline").get_asset("frames").get_batch_definition("whole")
    return definition.get_batch(batch_parameters={"dataframe": df})


def run_suite(df: pd.DataFrame, checks: dict[str, list[Any]]) -> list[CheckOutcome]:
    """Validate df against each check's expectations in one suite; a check passes when all of
    its expectations do. Metadata carries the counts and a few failing values."""
    import great_expectations as gx

    expectations = []
    for name, items in checks.items():
        for e in items:
            e.meta = {"check": name}
            expectations.append(e)
    suite = gx.ExpectationSuite(name="ragline_" + "_".join(sorted(checks))[:200], expectations=expectations)
    result = _batch(df).validate(suite)
    outcomes = {name: CheckOutcome(name, True, {"rows": len(df)}) for name in checks}
    for r in result.results:
        name = r.expectation_config.meta["check"]
        outcome = outcomes[name]
        outcome.passed = outcome.passed and bool(r.success)
        kind = r.expectation_config.type
        details = r.result or {}
        unexpected = details.get("unexpected_count")
        if unexpected is not None:
            outcome.metadata[f"{kind}.unexpected"] = int(unexpected)
            sample = details.get("partial_unexpected_list") or []
            if sample:
                outcome.metadata[f"{kind}.examples"] = ", ".join(map(str, sample[:5]))
        if "observed_value" in details:
            outcome.metadata[f"{kind}.observed"] = _plain(details["observed_value"])
        outcome.metadata[f"{kind}.passed"] = bool(r.success)
    return list(outcomes.values())


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _frame(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> pd.DataFrame:
    cur = conn.execute(query(name), params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def check_documents(conn: psycopg.Connection, source: str) -> list[CheckOutcome]:
    import great_expectations.expectations as gxe

    df = _frame(conn, "quality_documents", {"source": source})
    return run_suite(
        df,
        {
            DOCUMENTS_HAVE_TEXT: [
                gxe.ExpectTableRowCountToBeBetween(min_value=1),
                gxe.ExpectColumnValuesToNotBeNull(column="char_count"),
                gxe.ExpectColumnValuesToBeBetween(column="char_count", min_value=1),
            ],
        },
    )


def check_chunks(conn: psycopg.Connection, source: str, max_tokens: int) -> list[CheckOutcome]:
    import great_expectations.expectations as gxe

    chunks = _frame(conn, "quality_chunks", {"source": source})
    outcomes = run_suite(
        chunks,
        {
            CHUNKS_HAVE_NO_EMPTY_TEXT: [
                gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=1),
            ],
            CHUNK_TOKENS_WITHIN_BOUNDS: [
                gxe.ExpectColumnValuesToBeBetween(column="token_count", min_value=1, max_value=max_tokens),
            ],
        },
    )
    for o in outcomes:
        if o.name == CHUNK_TOKENS_WITHIN_BOUNDS:
            o.metadata["max_tokens"] = max_tokens
    documents = _frame(conn, "quality_document_chunk_counts", {"source": source})
    outcomes += run_suite(
        documents,
        {
            EVERY_LIVE_DOCUMENT_HAS_CHUNKS: [
                gxe.ExpectColumnValuesToBeBetween(column="chunk_count", min_value=1),
            ],
        },
    )
    return outcomes


def check_embeddings(conn: psycopg.Connection, source: str, model_id: str, dim: int) -> list[CheckOutcome]:
    import great_expectations.expectations as gxe

    df = _frame(conn, "quality_embeddings", {"source": source, "model_id": model_id})
    outcomes = run_suite(
        df,
        {
            EMBEDDING_DIMENSIONS_MATCH_MODEL: [
                gxe.ExpectColumnValuesToBeInSet(column="dim", value_set=[dim]),
            ],
            EMBEDDINGS_ARE_FINITE_UNIT_VECTORS: [
                gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
                gxe.ExpectColumnValuesToBeBetween(
                    column="norm",
                    min_value=1 - UNIT_NORM_TOLERANCE,
                    max_value=1 + UNIT_NORM_TOLERANCE,
                ),
            ],
            EVERY_CURRENT_CHUNK_IS_EMBEDDED: [gxe.ExpectColumnValuesToNotBeNull(column="dim")],
        },
    )
    for o in outcomes:
        o.metadata["model_id"] = model_id
        if o.name == EMBEDDING_DIMENSIONS_MATCH_MODEL:
            o.metadata["expected_dim"] = dim
    return outcomes


def check_eval_questions(
    questions: pd.DataFrame, references: pd.DataFrame, rejected: int
) -> list[CheckOutcome]:
    """questions: eval_set, question_id, normalised; references: eval_set, question_id, relevant_id,
    missing_id (null when the id names a live document or current chunk)."""
    import great_expectations.expectations as gxe

    questions = questions.assign(set_and_id=questions["eval_set"] + "/" + questions["question_id"])
    questions = questions.assign(set_and_text=questions["eval_set"] + "/" + questions["normalised"])
    outcomes = run_suite(
        questions,
        {
            EVAL_QUESTIONS_ARE_UNIQUE: [
                gxe.ExpectColumnValuesToBeUnique(column="set_and_id"),
                gxe.ExpectColumnValuesToBeUnique(column="set_and_text"),
            ],
        },
    )
    outcomes += run_suite(
        references, {EVAL_REFERENCES_EXIST: [gxe.ExpectColumnValuesToBeNull(column="missing_id")]}
    )
    outcomes.append(CheckOutcome(EVAL_LINES_ARE_VALID, rejected == 0, {"rejected_lines": rejected}))
    return outcomes
