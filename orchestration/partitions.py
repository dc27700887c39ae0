"""Partitions: one per configured source (never one per document), and one per day for quality."""

import dagster as dg

from ragline.config import Settings


def source_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([s.name for s in settings.sources])


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so today's scores can be computed (and recomputed)
    # during the day instead of waiting for midnight.
    return dg.DailyPartitionsDefinition(start_date=settings.evaluation.start_date, end_offset=1)
