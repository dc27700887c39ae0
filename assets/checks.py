"""Blocking check specs and results from ragline's quality outcomes."""

import warnings
from collections.abc import Iterable

import dagster as dg

from ragline.expectations import CheckOutcome

CHECK_DESCRIPTIONS = {
    "documents_have_text": "The source has live documents and none of them is empty.",
    "source_change_within_limit": (
        "The run deletes or replaces at most mass_change.max_fraction of the source's published documents "
        "(or was accepted with ragline publish --accept-change)."
    ),
    "published_documents_are_searchable": (
        "Every published document has a chunk in the BM25 index and a vector under the serving model."
    ),
    "chunk_spans_cover_document": (
        "Each current chunk's text is its document's text at the chunk's span, and the spans together "
        "cover every non-whitespace character of the document."
    ),
    "duplicate_chunk_share_within_limit": (
        "At most chunking.max_duplicate_share (0.5) of a source's current chunks repeat the text of "
        "another of its chunks: a splitter gone wrong or boilerplate copied across files fails."
    ),
    "chunk_token_counts_within_bounds": (
        "Every current chunk has 1..chunk_size tokens of the embedding model (a file of zero-width "
        "characters gives a chunk of 0 tokens)."
    ),
    "every_live_document_has_chunks": "Each live document's current version has at least one chunk.",
    "embedding_dimensions_match_embedder": (
        "Every current chunk's vector has the dimension the embedder reports now (local: 384; remote: "
        "the configured dimensions, else what the endpoint returns), not the ledger's own."
    ),
    "embeddings_are_finite_unit_vectors": (
        "Every current chunk's stored vector has unit norm (pgvector refuses NaN and infinite values; "
        "a zero or unnormalised vector fails)."
    ),
    "every_current_chunk_is_embedded": "Each current chunk has a vector from the configured model.",
    "hnsw_recall_at_10_meets_threshold": "HNSW recall@10 against exact search is at least min_recall.",
    "eval_questions_are_unique": "No question id or question text appears twice in an eval set.",
    "eval_references_exist_in_corpus": "Every relevant id names a live document or a current chunk.",
    "eval_set_lines_are_valid": "Every line of every eval set file was usable.",
    "ndcg_at_10_has_not_regressed": (
        "Per-question nDCG@10 against the previous (or pinned) partition: fails only when the paired "
        "bootstrap interval lies wholly below zero."
    ),
    "corpus_has_not_drifted": (
        "Corpus vectors against the pinned baseline, per source: fails when the share of rows unlike the "
        "baseline is significant and at least drift.min_new_share."
    ),
    "queries_have_not_drifted": (
        "The day's logged queries against the days before: fails when the share of queries unlike them is "
        "significant and at least drift.min_new_share."
    ),
}


def severity(name: str) -> dg.AssetCheckSeverity:
    """ragline.yaml's "error" (blocks downstream) or "warn" (shows, does not block)."""
    return dg.AssetCheckSeverity.ERROR if name == "error" else dg.AssetCheckSeverity.WARN


def blocking_specs(
    asset: str,
    names: Iterable[str],
    blocking: bool = True,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> list[dg.AssetCheckSpec]:
    # Blocking: a failed check stops downstream assets in the run, and automation waits for it.
    # Checks configured as "warn" are not blocking: Dagster's automation would otherwise still wait
    # on a failed WARN check (all_deps_blocking_checks_passed counts any failure).
    # A partitioned asset's checks are partitioned too, so that each result belongs to its source:
    # otherwise Dagster stores them without a partition and a pass of source B hides a failure of A.
    with warnings.catch_warnings():
        # Partitioned check specs are a 1.13 preview; they are what makes per-source gating correct.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=asset,
                blocking=blocking,
                description=CHECK_DESCRIPTIONS[name],
                partitions_def=partitions_def,
            )
            for name in names
        ]


def check_results(
    outcomes: Iterable[CheckOutcome], level: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(check_name=o.name, passed=o.passed, metadata=o.metadata, severity=level)
        for o in outcomes
    ]
