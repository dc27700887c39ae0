"""Blocking check specs and results from ragline's quality outcomes."""

import json
import warnings
from collections.abc import Callable, Iterable
from typing import Any

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
    "answer_scores_have_not_regressed": (
        "Each gate metric of each answer variant (per-question judge and similarity scores) against the "
        "previous good (or pinned) partition: fails only when the paired bootstrap interval lies wholly "
        "below zero and the drop is at least answer_evaluation.min_effect; unmeasured questions are left out."
    ),
    "corpus_has_not_drifted": (
        "Corpus vectors against the pinned baseline, per source: fails when the share of rows unlike the "
        "baseline is significant and at least drift.min_new_share."
    ),
    "queries_have_not_drifted": (
        "The day's logged queries against the days before: fails when the share of queries unlike them is "
        "significant and at least drift.min_new_share."
    ),
    "llm_costs_within_daily_budget": (
        "The day's model calls cost at most costs.daily_budget.warn USD (WARN past it) and at most "
        "costs.daily_budget.fail (ERROR past it); not tested when no budget is configured."
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


def gated_scores_asset(
    name: str,
    check: str,
    *,
    partitions: dg.TimeWindowPartitionsDefinition,
    automation: dg.AutomationCondition,
    blocking: bool,
    group: str,
    description: str,
    tables: str,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """The @dg.asset of a daily scores asset over the eval sets and variant corpora, gated by one check."""
    return dg.asset(
        name=name,
        partitions_def=partitions,
        # search_index too: the served corpus can change while the questions and variants stay.
        deps=["eval_set", "variant_corpora", "search_index"],
        group_name=group,
        kinds={"python", "postgres"},
        description=description,
        metadata={"tables": tables},
        check_specs=blocking_specs(name, [check], blocking),
        automation_condition=automation,
    )


# Settings a check compares against: the same on every run, so they go into one `config` text value
# (Dagster plots every numeric metadata value across materializations as if it were a trend).
CONSTANT_KEYS = frozenset(
    {
        "alpha",
        "confidence",
        "ef_search",
        "embedder_dim",
        "expected_dim",
        "max_duplicate_share",
        "max_fraction",
        "max_tokens",
        "min_effect",
        "min_new_share",
        "min_recall",
    }
)

# What on-call does when a check fails (a check's own `where_to_look` is more specific and wins).
WHAT_TO_DO = {
    "documents_have_text": (
        "look at the source's files and ragline.quarantine (ragline status lists quarantined files); "
        "an empty root usually means the folder is not mounted"
    ),
    "source_change_within_limit": (
        "compare the source folder with what is published; if the change is intended, "
        "`ragline publish --accept-change SOURCE` and re-run the partition"
    ),
    "published_documents_are_searchable": (
        "re-run the source's embeddings and serving_chunks; the listed doc_ids are in "
        "ragline.serving_chunks without a BM25 row or a serving vector"
    ),
    "chunk_spans_cover_document": (
        "the chunker cut text it did not keep: the listed doc_ids and chunk_ids are in ragline.chunks; "
        "check the source's chunking settings"
    ),
    "duplicate_chunk_share_within_limit": (
        "most_repeated names the text: remove the boilerplate from the files or raise "
        "chunking.max_duplicate_share for the source"
    ),
    "chunk_token_counts_within_bounds": (
        "the listed chunk_ids in ragline.chunks are empty or too long; lower chunking.chunk_size "
        "or quarantine the file"
    ),
    "every_live_document_has_chunks": (
        "the listed doc_ids have no chunk in ragline.chunks: re-run chunks for the partition"
    ),
    "embedding_dimensions_match_embedder": (
        "the listed chunk_ids in ragline.embeddings have another dimension than the embedder: "
        "re-embed (the endpoint's model or `dimensions` changed)"
    ),
    "embeddings_are_finite_unit_vectors": (
        "the listed chunk_ids have a zero or unnormalised vector in ragline.embeddings: check the "
        "embedding endpoint, then re-embed"
    ),
    "every_current_chunk_is_embedded": (
        "the listed chunk_ids have no vector in ragline.embeddings: re-run embeddings for the partition"
    ),
    "hnsw_recall_at_10_meets_threshold": "see verdict; until this passes, the previous model keeps serving",
    "eval_questions_are_unique": (
        "remove or rename the listed duplicates in the eval set file (ragline.eval_questions)"
    ),
    "eval_references_exist_in_corpus": (
        "the listed relevant ids name no live document or current chunk: fix the eval set file or "
        "restore the documents"
    ),
    "eval_set_lines_are_valid": "fix the named line of the eval set file (first_rejected says why)",
    "ndcg_at_10_has_not_regressed": (
        "see the comparisons table and failed_questions; ragline.retrieval_results holds every question"
    ),
    "answer_scores_have_not_regressed": (
        "see the gate table; ragline.answer_metric_results holds every question's samples and reasons"
    ),
    "corpus_has_not_drifted": "see the drift table; `ragline drift pin` re-pins the baseline",
    "queries_have_not_drifted": "see the drift table; add eval questions for the new topics",
    "llm_costs_within_daily_budget": (
        "see by_asset and by_caller; `ragline cost --by caller --since DAY` lists who spent it "
        "(ragline.llm_calls has every call)"
    ),
}


def check_results(
    outcomes: Iterable[CheckOutcome],
    level: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    partition: str | None = None,
) -> list[dg.AssetCheckResult]:
    """Dagster results of ragline's outcomes. An outcome that could not test anything (`untested`)
    is a failed WARN result whatever its verdict, so the UI shows a yellow warning and never a green
    pass; in a run a WARN failure does not stop downstream steps, and the automation gate
    (orchestration/check_gate.py) does not wait on it either."""
    return [_result(o, level, partition) for o in outcomes]


def _result(o: CheckOutcome, level: dg.AssetCheckSeverity, partition: str | None) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"partition": o.metadata.get("partition", partition or "none (unpartitioned)")}
    config = {k: v for k, v in o.metadata.items() if k in CONSTANT_KEYS}
    metadata.update({k: v for k, v in o.metadata.items() if k not in CONSTANT_KEYS and k != "partition"})
    if o.untested:
        metadata["not_tested"] = o.untested
    if config:
        metadata["config"] = dg.MetadataValue.text(json.dumps(config, sort_keys=True))
    if "where_to_look" not in metadata:
        metadata["what_to_do"] = WHAT_TO_DO[o.name]
    return dg.AssetCheckResult(
        check_name=o.name,
        passed=o.passed and not o.untested,
        metadata=metadata,
        severity=dg.AssetCheckSeverity.WARN if o.untested else level,
    )
