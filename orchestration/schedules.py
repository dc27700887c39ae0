"""Schedules: the daily safety net for ingestion, and the daily quality run (scores, A/B, drift)."""

import datetime as dt

import dagster as dg

from orchestration.check_gate import HELD_TAG, held_assets, held_summary, held_tag
from orchestration.resources import RaglineResource
from ragline.index import gc

DAILY_CRON = "0 3 * * *"
QUALITY_CRON = "0 4 * * *"  # after the 03:00 refresh has had time to flow through the indexes


def daily_refresh_schedule(job, sources: list[str]) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_refresh",
        cron_schedule=DAILY_CRON,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Scans every source once a day (raw_documents); what depends on a source follows only if "
            "its documents changed."
        ),
    )
    def daily_refresh(context: dg.ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [dg.RunRequest(partition_key=s, run_key=f"{s}:{stamp}") for s in sources]

    return daily_refresh


def daily_quality_schedule(job, days: dg.DailyPartitionsDefinition) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_quality",
        cron_schedule=QUALITY_CRON,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Scores retrieval, compares variants and tests drift daily, even if nothing changed; holds "
            "the assets downstream of a blocking check that failed at ERROR."
        ),
    )
    def daily_quality(context: dg.ScheduleEvaluationContext):
        # Yesterday's partition: its day has ended, so its query-drift window is complete. Today's
        # partition is scored during the day whenever the index changes (automation).
        day = (context.scheduled_execution_time - dt.timedelta(days=1)).strftime("%Y-%m-%d")
        first = days.get_first_partition_key()
        if first is None or day < first:
            # A first install before 04:00 UTC: its partitions start today, yesterday does not exist.
            return dg.SkipReason(f"no partition for {day}: the daily partitions start at {first}")
        graph = context.repository_def.asset_graph  # the code location's, as automation sees it
        keys = sorted(job.selection.resolve(graph), key=lambda k: k.to_user_string())
        held = held_assets(context.instance, graph, keys)
        if not held:
            return dg.RunRequest(partition_key=day, run_key=f"quality:{day}")
        if len(held) == len(keys):
            return dg.SkipReason(f"every quality asset held: {held_summary(held)}")
        runnable = [k for k in keys if k not in held]
        return dg.RunRequest(
            partition_key=day,
            run_key=f"quality:{day}",
            asset_selection=runnable,
            # The job's checks of those assets: with none named, Dagster adds every check of them.
            asset_check_keys=sorted(
                (c for c in job.selection.resolve_checks(graph) if c.asset_key in runnable),
                key=lambda c: (c.asset_key.to_user_string(), c.name),
            ),
            tags={HELD_TAG: held_tag(held)},
        )

    return daily_quality


GC_CRON = "0 5 * * *"  # after the daily refresh and quality runs


@dg.op(description="Removes generations, chunks, versions and vectors that nothing retained uses.")
def collect_garbage(context: dg.OpExecutionContext, ragline: RaglineResource) -> dg.Output:
    with ragline.database().connection() as conn:
        stats = gc.collect_garbage(conn)
    context.log.info(gc.format_gc(stats))
    return dg.Output(
        None,
        metadata={
            "rows_freed": stats.total_rows,
            "kib_freed": round(stats.total_bytes / 1024, 1),
            **{f"rows/{kind}": n for kind, n in stats.rows.items()},
        },
    )


@dg.job(description="Garbage collection of what no served or rollback generation references.")
def garbage_collection():
    collect_garbage()


def daily_gc_schedule() -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_gc",
        cron_schedule=GC_CRON,
        job=garbage_collection,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs ragline gc once a day.",
    )
