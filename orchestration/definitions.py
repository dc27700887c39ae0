"""The single code location: assets, checks, jobs, automation, sensor and schedule for ragline.yaml."""

import os

import dagster as dg

from assets.chunks import chunks_asset
from assets.documents import raw_documents_asset
from assets.embeddings import embeddings_asset
from assets.search_index import search_index_asset
from orchestration.automation import FOLLOW_UPSTREAM
from orchestration.partitions import source_partitions
from orchestration.resources import EmbedderResource, RaglineResource
from orchestration.schedules import daily_refresh_schedule
from orchestration.sensors import source_files_sensor
from ragline.config import Settings, load_settings

SOURCE_PIPELINE_JOB = "source_pipeline"
INDEX_JOB = "index_pipeline"


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = source_partitions(settings)
    raw_documents = raw_documents_asset(partitions)
    source_assets = [
        raw_documents,
        chunks_asset(partitions, FOLLOW_UPSTREAM),
        embeddings_asset(partitions, FOLLOW_UPSTREAM),
    ]
    search_index = search_index_asset(FOLLOW_UPSTREAM)
    source_job = dg.define_asset_job(
        SOURCE_PIPELINE_JOB,
        selection=dg.AssetSelection.assets(*source_assets),
        description="raw_documents -> chunks -> embeddings for one source.",
    )
    index_job = dg.define_asset_job(
        INDEX_JOB,
        selection=dg.AssetSelection.assets(search_index),
        description="Build or refresh the search indexes.",
    )
    return dg.Definitions(
        assets=[*source_assets, search_index],
        jobs=[source_job, index_job],
        schedules=[daily_refresh_schedule(source_job, [s.name for s in settings.sources])],
        sensors=[
            source_files_sensor(settings, raw_documents),
            dg.AutomationConditionSensorDefinition(
                "ragline_automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            ),
        ],
        # Steps share one process: a subprocess per step re-imports Dagster and great-expectations
        # and reloads the model (about 10 s a step on 2 cores), while the model already uses both.
        executor=dg.in_process_executor,
        resources={
            "ragline": RaglineResource(config_path=str(settings.path)),
            "embedder": EmbedderResource.from_settings(settings.embedding, dict(os.environ)),
        },
    )


defs = build_definitions(load_settings())
