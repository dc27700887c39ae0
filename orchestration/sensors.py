"""Sensors: source folders are watched and only the sources whose files changed are re-ingested."""

import json

import dagster as dg

from ragline.config import Settings
from ragline.sources import source_fingerprint


def source_files_sensor(settings: Settings, target: dg.AssetsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_files_changed",
        description="Requests raw_documents for each source whose files were added, edited or removed.",
        target=[target],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def source_files_changed(context: dg.SensorEvaluationContext):
        previous = json.loads(context.cursor) if context.cursor else {}
        current = {s.name: source_fingerprint(s) for s in settings.sources}
        requests = [
            dg.RunRequest(partition_key=name, run_key=f"{name}:{fingerprint}")
            for name, fingerprint in current.items()
            if previous.get(name) != fingerprint and fingerprint != "missing"
        ]
        context.update_cursor(json.dumps(current))
        if not requests:
            return dg.SkipReason("no source folder changed")
        return requests

    return source_files_changed
