"""Partitions: one per configured source (never one per document), and one per day for quality."""

import dagster as dg

from ragline.config import Settings
from ragline.storage.provenance import first_partition_day


def source_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([s.name for s in settings.sources])


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    # From the first day the project was materialized (or evaluation.start_date): no permanently
    # missing days before the project existed. end_offset=1: today's partition exists, so today's
    # scores can be computed (and recomputed) during the day instead of waiting for midnight.
    first, _why = first_partition_day(settings)
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), end_offset=1)
