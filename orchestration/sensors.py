"""Sensors: source folders are watched and only the sources whose files changed are re-ingested."""

import json

import dagster as dg

from ragline.config import Settings
from ragline.ingest.sources import source_fingerprint


def source_files_sensor(settings: Settings, target: dg.AssetsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_files_changed",
        description="Requests raw_documents for each source whose files were added, edited or removed.",
        target=[target],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def source_files_changed(context: dg.SensorEvaluationContext):
        # Cursor: each source's last fingerprint and how many changes were requested for it. The
        # count goes into the run key, so a folder that returns to an earlier state (a file added,
        # then removed) is a new request, not a duplicate of an old one.
        state = json.loads(context.cursor) if context.cursor else {}
        seen, counts = state.get("fingerprints", {}), state.get("changes", {})
        requests = []
        for source in settings.sources:
            fingerprint = source_fingerprint(source)
            if fingerprint == "missing" or seen.get(source.name) == fingerprint:
                continue
            seen[source.name] = fingerprint
            counts[source.name] = counts.get(source.name, 0) + 1
            run_key = f"{source.name}:{counts[source.name]}:{fingerprint[:16]}"
            requests.append(dg.RunRequest(partition_key=source.name, run_key=run_key))
        context.update_cursor(json.dumps({"fingerprints": seen, "changes": counts}))
        if not requests:
            return dg.SkipReason("no source folder changed")
        return requests

    return source_files_changed
