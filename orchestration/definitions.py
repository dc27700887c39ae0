"""The single code location: assets, checks, jobs, automation, sensor and schedules for ragline.yaml."""

import os

import dagster as dg

from assets.annotation import annotation_queue_asset
from assets.answer_quality import answer_scores_asset
from assets.chunks import chunks_asset
from assets.costs import LLM_COSTS_JOB, llm_costs_asset, llm_costs_schedule
from assets.documents import raw_documents_asset
from assets.drift import drift_metrics_asset
from assets.embeddings import embeddings_asset
from assets.evaluation import (
    eval_set_asset,
    retrieval_scores_asset,
    variant_comparison_asset,
    variant_corpora_asset,
)
from assets.search_index import search_index_asset
from assets.serving import serving_chunks_asset
from orchestration.automation import (
    FOLLOW_PUBLISHED,
    FOLLOW_UPSTREAM,
    freshness_policy,
    quality_condition,
    with_freshness,
)
from orchestration.check_gate import automation_sensor
from orchestration.executors import build_executor, executor_name, steps_share_run_process
from orchestration.health import freshness_checks, health_sensors
from orchestration.partitions import daily_partitions, source_partitions
from orchestration.resources import EmbedderResource, RaglineResource
from orchestration.schedules import (
    daily_gc_schedule,
    daily_quality_schedule,
    daily_refresh_schedule,
    garbage_collection,
)
from orchestration.sensors import source_files_sensor
from ragline.config import Settings, load_settings

SOURCE_PIPELINE_JOB = "source_pipeline"
SOURCE_SCAN_JOB = "source_scan"
INDEX_JOB = "index_pipeline"
QUALITY_JOB = "quality_pipeline"


# Automation runs are asset runs (__ASSET_JOB); their tags say what started them.
AUTOMATION_RUN_TAGS = {"ragline/launched_by": "ragline_automation"}


def build_definitions(settings: Settings, executor: str | None = None) -> dg.Definitions:
    """executor: one of orchestration.executors.EXECUTORS; default $RAGLINE_EXECUTOR, else in_process."""
    executor = executor or executor_name()
    partitions = source_partitions(settings)
    days = daily_partitions(settings)
    raw_documents = raw_documents_asset(partitions)
    source_assets = [
        raw_documents,  # first: it keeps a FreshnessPolicy below
        chunks_asset(partitions, FOLLOW_UPSTREAM),
        embeddings_asset(partitions, FOLLOW_UPSTREAM),
        serving_chunks_asset(partitions, FOLLOW_UPSTREAM),
    ]
    index_assets = [
        search_index_asset(FOLLOW_PUBLISHED),
        eval_set_asset(FOLLOW_UPSTREAM),
        variant_corpora_asset(FOLLOW_UPSTREAM),
    ]
    quality = quality_condition(settings.automation)
    quality_assets = [
        retrieval_scores_asset(days, quality, blocking=settings.evaluation.severity == "error"),
        variant_comparison_asset(days, quality),
        drift_metrics_asset(days, quality, blocking=settings.drift.severity == "error"),
        answer_scores_asset(days, quality, blocking=settings.answer_evaluation.severity == "error"),
    ]
    # Not on-call's: no freshness policy (a queue nobody labels from is no outage).
    annotation_queue = annotation_queue_asset(days, quality)
    policy = freshness_policy(settings.freshness)
    assets = [
        with_freshness(raw_documents, policy),
        *source_assets[1:],
        *index_assets,
        *(with_freshness(a, policy) for a in quality_assets),
        annotation_queue,
    ]
    # The freshness checks are recorded by the freshness_checks sensor, not by the pipeline's runs.
    freshness = freshness_checks(assets, settings)
    # Its own hourly schedule keeps it current; its budget check is what on-call watches.
    llm_costs = llm_costs_asset(days)
    costs_job = dg.define_asset_job(
        LLM_COSTS_JOB,
        selection=dg.AssetSelection.assets(llm_costs),
        description="One day's model calls rolled up by asset, model and caller, with the budget check.",
    )
    source_job = dg.define_asset_job(
        SOURCE_PIPELINE_JOB,
        selection=dg.AssetSelection.assets(*source_assets) - dg.AssetSelection.checks(*freshness),
        description="raw_documents -> chunks -> embeddings -> serving_chunks (publish) for one source.",
    )
    scan_job = dg.define_asset_job(
        SOURCE_SCAN_JOB,
        selection=dg.AssetSelection.assets(raw_documents) - dg.AssetSelection.checks(*freshness),
        description="raw_documents of one source; what depends on it follows only if its data changed.",
    )
    index_job = dg.define_asset_job(
        INDEX_JOB,
        selection=dg.AssetSelection.assets(*index_assets) - dg.AssetSelection.checks(*freshness),
        description="Build or refresh the search indexes, the eval sets and the variants' corpora.",
    )
    quality_job = dg.define_asset_job(
        QUALITY_JOB,
        selection=dg.AssetSelection.assets(*quality_assets, annotation_queue)
        - dg.AssetSelection.checks(*freshness),
        description="One day's retrieval and answer scores, A/B, drift metrics and annotation queue.",
    )
    return dg.Definitions(
        assets=[*assets, llm_costs],
        asset_checks=freshness,
        jobs=[source_job, scan_job, index_job, quality_job, costs_job, garbage_collection],
        schedules=[
            daily_refresh_schedule(scan_job, [s.name for s in settings.sources]),
            daily_quality_schedule(quality_job, days),
            daily_gc_schedule(),
            llm_costs_schedule(costs_job, days),
        ],
        sensors=[
            source_files_sensor(settings, source_job),
            automation_sensor(
                "ragline_automation",
                target=dg.AssetSelection.all(),
                description="Runs what depends on data whose version changed (automation conditions).",
                run_tags=AUTOMATION_RUN_TAGS,
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            ),
            *health_sensors(settings, freshness),
        ],
        executor=build_executor(executor),
        resources={
            "ragline": RaglineResource(
                config_path=str(settings.path), start_embedded=steps_share_run_process(executor)
            ),
            "embedder": EmbedderResource.from_settings(settings.embedding, dict(os.environ)),
        },
    )


defs = build_definitions(load_settings())
