"""Sensors: source folders are watched and only the sources whose files changed are re-ingested."""

import json

import dagster as dg

from assets.documents import FINGERPRINT_KEY
from ragline.config import Settings
from ragline.ingest.sources import source_fingerprint

RAW_DOCUMENTS = dg.AssetKey("raw_documents")


def ingested_fingerprint(instance: dg.DagsterInstance, source: str) -> str | None:
    """The folder fingerprint that the source's latest raw_documents run scanned (the stored state)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_DOCUMENTS, asset_partitions=[source]), limit=1
    ).records
    if not records:
        return None
    value = (records[0].asset_materialization.metadata or {}).get(FINGERPRINT_KEY)
    return getattr(value, "value", value)


def source_files_sensor(settings: Settings, job) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_files_changed",
        description=(
            "Scans each source whose files changed since they were ingested (raw_documents of "
            "source_pipeline); the rest of the pipeline follows if its documents changed."
        ),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def source_files_changed(context: dg.SensorEvaluationContext):
        # A source is requested when its folder's fingerprint differs both from what its latest
        # raw_documents run scanned (stored with that materialization: a first tick without a
        # cursor, after `ragline materialize`, requests nothing) and from what this sensor already
        # requested (the cursor: a run still queued is not requested twice). Each request's count
        # goes into the run key, so a folder that returns to an earlier state is a new request.
        state = json.loads(context.cursor) if context.cursor else {}
        requested, counts = state.get("fingerprints", {}), state.get("changes", {})
        requests = []
        for source in settings.sources:
            fingerprint = source_fingerprint(source)
            if fingerprint == "missing" or requested.get(source.name) == fingerprint:
                continue
            if ingested_fingerprint(context.instance, source.name) == fingerprint:
                requested[source.name] = fingerprint
                continue
            requested[source.name] = fingerprint
            counts[source.name] = counts.get(source.name, 0) + 1
            run_key = f"{source.name}:{counts[source.name]}:{fingerprint[:16]}"
            # raw_documents only: a folder whose files were touched but not changed (a restore, a
            # checkout) records one scan, not a chunk, embed and publish that did nothing; when the
            # documents changed, automation runs the rest of the source's pipeline.
            requests.append(
                dg.RunRequest(partition_key=source.name, run_key=run_key, asset_selection=[RAW_DOCUMENTS])
            )
        context.update_cursor(json.dumps({"fingerprints": requested, "changes": counts}))
        if not requests:
            return dg.SkipReason("no source folder changed since it was ingested")
        return requests

    return source_files_changed
