"""One partition per configured source (never one per document)."""

import dagster as dg

from ragline.config import Settings


def source_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([s.name for s in settings.sources])
