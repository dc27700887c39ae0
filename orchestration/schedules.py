"""The daily safety net: every source re-ingested, whatever the sensor saw."""

import dagster as dg

DAILY_CRON = "0 3 * * *"


def daily_refresh_schedule(job, sources: list[str]) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_refresh",
        cron_schedule=DAILY_CRON,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the source pipeline for every source once a day; unchanged data is a no-op.",
    )
    def daily_refresh(context: dg.ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [dg.RunRequest(partition_key=s, run_key=f"{s}:{stamp}") for s in sources]

    return daily_refresh
