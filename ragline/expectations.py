"""Data-quality suites (great-expectations) over what a source has stored; one outcome per check."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from ragline.config import ChunkingSettings
from ragline.storage.db import query
from ragline.types import Embedder

# Check names: what holds when the check passes. Assets use these as their check keys.
DOCUMENTS_HAVE_TEXT = "documents_have_text"
CHUNK_SPANS_COVER_DOCUMENT = "chunk_spans_cover_document"
DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT = "duplicate_chunk_share_within_limit"
CHUNK_TOKENS_WITHIN_BOUNDS = "chunk_token_counts_within_bounds"
EVERY_LIVE_DOCUMENT_HAS_CHUNKS = "every_live_document_has_chunks"
EMBEDDING_DIMENSIONS_MATCH_EMBEDDER = "embedding_dimensions_match_embedder"
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
    """A check's verdict. `untested` is the reason a check could not test anything (too few rows,
    nothing to compare): such an outcome is never reported as a pass."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    untested: str | None = None


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


def run_suite(df: pd.DataFrame, checks: dict[str, list[Any]], rows: str = "rows") -> list[CheckOutcome]:
    """Validate df against each check's expectations in one suite; a check passes when all of
    its expectations do. Metadata carries the counts and a few failing values. A check that passes
    over an empty frame tested nothing: it is marked untested ("no {rows} to test")."""
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
    for outcome in outcomes.values():
        if outcome.passed and df.empty:
            outcome.untested = f"no {rows} to test"
    return list(outcomes.values())


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def frame(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> pd.DataFrame:
    cur = conn.execute(query(name), params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def check_documents(conn: psycopg.Connection, source: str) -> list[CheckOutcome]:
    import great_expectations.expectations as gxe

    df = frame(conn, "quality_documents", {"source": source})
    [outcome] = run_suite(
        df,
        {
            DOCUMENTS_HAVE_TEXT: [
                gxe.ExpectTableRowCountToBeBetween(min_value=1),
                gxe.ExpectColumnValuesToNotBeNull(column="char_count"),
                gxe.ExpectColumnValuesToBeBetween(column="char_count", min_value=1),
            ],
        },
        rows="live documents",
    )
    empty = df["char_count"].isna() | (df["char_count"] < 1)
    outcome.metadata["failing_doc_ids"] = _first(df.loc[empty, "doc_id"]) or (
        "" if len(df) else "no live documents"
    )
    return [outcome]


def check_chunks(conn: psycopg.Connection, source: str, chunking: ChunkingSettings) -> list[CheckOutcome]:
    """The source's current chunks (those of its live documents' current versions) against the
    documents they were cut from, the chunk size and each other."""
    import great_expectations.expectations as gxe

    chunks = frame(conn, "quality_chunks", {"source": source})
    outcomes = run_suite(
        chunks,
        {
            CHUNK_TOKENS_WITHIN_BOUNDS: [
                gxe.ExpectColumnValuesToBeBetween(
                    column="token_count", min_value=1, max_value=chunking.chunk_size
                ),
            ],
            # At least (1 - limit) of the chunks have a text no other chunk of the source has.
            DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT: [
                gxe.ExpectColumnValuesToBeBetween(
                    column="copies", max_value=1, mostly=1 - chunking.max_duplicate_share
                ),
            ],
        },
        rows="current chunks",
    )
    out_of_bounds = ~chunks["token_count"].between(1, chunking.chunk_size)
    repeated = chunks[chunks["copies"] > 1]
    for o in outcomes:
        if o.name == CHUNK_TOKENS_WITHIN_BOUNDS:
            o.metadata["max_tokens"] = chunking.chunk_size
            o.metadata["failing_chunk_ids"] = _first(chunks.loc[out_of_bounds, "chunk_id"])
        if o.name == DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT:
            o.metadata["duplicate_share"] = round(len(repeated) / len(chunks), 4) if len(chunks) else 0.0
            o.metadata["max_duplicate_share"] = chunking.max_duplicate_share
            o.metadata["repeated_texts"] = int(repeated["text_hash"].nunique())
            if len(repeated):
                top = repeated.sort_values(["copies", "text_hash"], ascending=[False, True]).iloc[0]
                o.metadata["most_repeated"] = f"{int(top['copies'])} chunks: {top['text_start']!r}"
    outcomes += _check_spans(conn, source)
    documents = frame(conn, "quality_document_chunk_counts", {"source": source})
    [has_chunks] = run_suite(
        documents,
        {
            EVERY_LIVE_DOCUMENT_HAS_CHUNKS: [
                gxe.ExpectColumnValuesToBeBetween(column="chunk_count", min_value=1),
            ],
        },
        rows="live documents",
    )
    has_chunks.metadata["failing_doc_ids"] = _first(documents.loc[documents["chunk_count"] < 1, "doc_id"])
    return [*outcomes, has_chunks]


def chunk_span_faults(
    text: str, chunks: list[tuple[str, int | None, int | None, str]]
) -> tuple[list[str], int]:
    """One document's chunks (id, start_char, end_char, text) against its text: the ids of the chunks
    whose text is not text[start_char:end_char], and how many non-whitespace characters of the
    text no correct span covers. Whitespace is Python's (str.isspace), as in the chunker's strip."""
    misplaced = []
    spans = []
    for chunk_id, start, end, chunk_text in chunks:
        at_span = start is not None and end is not None and 0 <= start <= end <= len(text)
        if at_span and text[start:end] == chunk_text:
            spans.append((start, end))
        else:
            misplaced.append(chunk_id)
    uncovered = 0
    covered_to = 0
    for start, end in sorted(spans):
        if start > covered_to:
            uncovered += _non_whitespace(text[covered_to:start])
        covered_to = max(covered_to, end)
    return misplaced, uncovered + _non_whitespace(text[covered_to:])


def _non_whitespace(text: str) -> int:
    return len("".join(text.split()))


def _check_spans(conn: psycopg.Connection, source: str) -> list[CheckOutcome]:
    """CHUNK_SPANS_COVER_DOCUMENT over a per-document frame. The texts are compared here rather than
    in SQL: substr at a character offset rescans the text from its start, so a long document with
    thousands of chunks would cost the square of its length."""
    import great_expectations.expectations as gxe

    rows = []
    # A server-side cursor: one document's text and chunks at a time, not the whole source at once.
    with conn.transaction(), conn.cursor(name=f"chunk_spans_{source}") as cur:
        cur.itersize = 200
        cur.execute(query("quality_chunk_spans"), {"source": source})
        for doc_id, text, chunk_ids, starts, ends, texts in cur:
            chunks = list(zip(chunk_ids, starts, ends, texts, strict=True))
            misplaced, uncovered = chunk_span_faults(text, chunks)
            rows.append((doc_id, misplaced[0] if misplaced else None, len(misplaced), uncovered))
    columns = ["doc_id", "first_misplaced_chunk", "misplaced_chunks", "uncovered_chars"]
    df = pd.DataFrame(rows, columns=columns)
    [outcome] = run_suite(
        df,
        {
            CHUNK_SPANS_COVER_DOCUMENT: [
                gxe.ExpectColumnValuesToBeNull(column="first_misplaced_chunk"),
                gxe.ExpectColumnSumToBeBetween(column="uncovered_chars", max_value=0),
            ],
        },
        rows="live documents",
    )
    failing = df[(df["misplaced_chunks"] > 0) | (df["uncovered_chars"] > 0)]
    outcome.metadata.update(
        {
            "misplaced_chunks": int(df["misplaced_chunks"].sum()),
            "uncovered_chars": int(df["uncovered_chars"].sum()),
            "failing_doc_ids": _first(failing["doc_id"]),
            "misplaced_chunk_ids": _first(df["first_misplaced_chunk"].dropna()),
        }
    )
    return [outcome]


def _first(values: pd.Series, n: int = 5) -> str:
    """The first few failing ids, for a check's metadata ("" when none fail)."""
    return ", ".join(map(str, values.head(n)))


def check_embeddings(conn: psycopg.Connection, source: str, embedder: Embedder) -> list[CheckOutcome]:
    """The vectors the embedder's model has stored for the source's current chunks, against the
    dimension the embedder reports now (never the ledger's own dim column: that would compare the
    ledger with itself). A remote model without a configured `dimensions` learns its dimension
    from the vectors it returned in this process, or else from one probe request."""
    import great_expectations.expectations as gxe

    df = frame(conn, "quality_embeddings", {"source": source, "model_id": embedder.model_id})
    stored = df["dim"].notna()
    dim = embedder.dim if stored.any() else None  # no vectors: nothing to compare, no probe
    outcomes = run_suite(
        df,
        {
            EMBEDDING_DIMENSIONS_MATCH_EMBEDDER: [
                gxe.ExpectColumnValuesToBeInSet(column="dim", value_set=[dim]),
            ],
            # pgvector refuses NaN and infinite elements, so stored vectors are finite: the norm is
            # what can be wrong (a zero vector, or one a writer did not normalise).
            EMBEDDINGS_ARE_FINITE_UNIT_VECTORS: [
                gxe.ExpectColumnValuesToBeBetween(
                    column="norm",
                    min_value=1 - UNIT_NORM_TOLERANCE,
                    max_value=1 + UNIT_NORM_TOLERANCE,
                ),
            ],
            EVERY_CURRENT_CHUNK_IS_EMBEDDED: [gxe.ExpectColumnValuesToNotBeNull(column="dim")],
        },
        rows="current chunks",
    )
    failing = {
        EMBEDDING_DIMENSIONS_MATCH_EMBEDDER: stored & (df["dim"] != dim),
        EMBEDDINGS_ARE_FINITE_UNIT_VECTORS: stored & ((df["norm"] - 1).abs() > UNIT_NORM_TOLERANCE),
        EVERY_CURRENT_CHUNK_IS_EMBEDDED: ~stored,
    }
    for o in outcomes:
        o.metadata["model_id"] = embedder.model_id
        o.metadata["failing_chunk_ids"] = _first(df.loc[failing[o.name], "chunk_id"])
        if o.name == EMBEDDING_DIMENSIONS_MATCH_EMBEDDER:
            o.metadata["embedder_dim"] = dim
        if o.name != EVERY_CURRENT_CHUNK_IS_EMBEDDED and o.passed and not stored.any():
            o.untested = o.untested or "no stored vectors to test"
    return outcomes


def check_eval_questions(
    questions: pd.DataFrame, references: pd.DataFrame, rejected: list[tuple[str, str, str]], lines: int
) -> list[CheckOutcome]:
    """questions: eval_set, question_id, normalised; references: eval_set, question_id, relevant_id,
    missing_id (null when the id names a live document or current chunk); rejected: (eval set,
    where, reason) per unusable line; lines: how many lines or items were read in all."""
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
        rows="eval questions",
    )
    outcomes += run_suite(
        references,
        {EVAL_REFERENCES_EXIST: [gxe.ExpectColumnValuesToBeNull(column="missing_id")]},
        rows="relevant ids",
    )
    repeated = questions["set_and_id"].duplicated(keep=False) | questions["set_and_text"].duplicated(
        keep=False
    )
    missing = references[references["missing_id"].notna()]
    failing = {
        EVAL_QUESTIONS_ARE_UNIQUE: questions.loc[repeated, "set_and_id"],
        EVAL_REFERENCES_EXIST: missing["eval_set"]
        + "/"
        + missing["question_id"]
        + " -> "
        + missing["missing_id"],
    }
    for o in outcomes:
        o.metadata["failing_ids"] = _first(failing[o.name])
    lines_valid = CheckOutcome(
        EVAL_LINES_ARE_VALID,
        not rejected,
        {
            "rejected_lines": len(rejected),
            "lines_read": lines,
            # The file, line and reason of the first bad lines: "golden: golden.jsonl:3: invalid JSON".
            "first_rejected": "; ".join(f"{s}: {where}: {why}" for s, where, why in rejected[:3]) or "none",
        },
    )
    if not rejected and not lines:
        lines_valid.untested = (
            "no eval set lines to read (no eval set file configured: none or only synthetic sets; "
            "or every file is empty)"
        )
    outcomes.append(lines_valid)
    return outcomes
