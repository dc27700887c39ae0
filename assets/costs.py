"""llm_costs: each day's model calls rolled up by asset, model and caller, against the daily budget."""

import datetime as dt

import dagster as dg

from assets.checks import blocking_specs, check_results, severity
from assets.tables import inline_table
from orchestration.resources import RaglineResource
from ragline.costs import LLM_COSTS_WITHIN_DAILY_BUDGET, CostRow, day_bounds, rollup
from ragline.costs.budget import budget_outcome

LLM_COSTS_JOB = "llm_costs_job"
LLM_COSTS_CRON = "30 * * * *"  # hourly: a budget crossed during the day shows within the hour


def llm_costs_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="llm_costs",
        partitions_def=partitions,
        group_name="ragline",
        kinds={"python", "postgres"},
        description="Per UTC day: model calls, tokens and USD by asset, model and caller; the daily budget.",
        metadata={"table": "ragline.llm_calls"},
        check_specs=blocking_specs("llm_costs", [LLM_COSTS_WITHIN_DAILY_BUDGET]),
    )
    def llm_costs(context: dg.AssetExecutionContext, ragline: RaglineResource):
        settings = ragline.settings()
        since, until = day_bounds(dt.date.fromisoformat(context.partition_key))
        with ragline.database().connection() as conn:
            groups = {by: rollup(conn, by, since, until) for by in ("asset", "model", "caller")}
        models = groups["model"]
        total = sum(r.cost_usd for r in models)
        unpriced = sorted({m for r in models for m in r.unpriced_models})
        if unpriced:
            context.log.warning(f"no price in prices: for {', '.join(unpriced)}: their cost is not counted")
        budget = settings.costs.daily_budget
        outcome = budget_outcome(total, budget.warn, budget.fail, unpriced=unpriced)
        table = {
            by: inline_table(
                [by, "calls (failed)", "tokens in/out", "USD"],
                [[r.label, _calls(r), f"{r.prompt_tokens}/{r.completion_tokens}", r.cost_usd] for r in rows],
            )
            for by, rows in groups.items()
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r.calls for r in models),
                "llm_cost_usd": round(total, 6),
                "llm_tokens_in": sum(r.prompt_tokens for r in models),
                "llm_tokens_out": sum(r.completion_tokens for r in models),
                "unpriced_models": ", ".join(unpriced) or "none",
                **{f"by_{by}": value for by, value in table.items()},
                "detail": f"ragline.llm_calls WHERE at in [{since:%Y-%m-%d}, {until:%Y-%m-%d}) UTC",
            },
            check_results=check_results(
                [outcome], severity(outcome.metadata["level"]), context.partition_key
            ),
        )

    return llm_costs


def _calls(row: CostRow) -> str:
    return f"{row.calls} ({row.failed})"


def llm_costs_schedule(job, days: dg.DailyPartitionsDefinition) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="hourly_llm_costs",
        cron_schedule=LLM_COSTS_CRON,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rolls up today's model calls hourly (and yesterday's once more just after midnight).",
    )
    def hourly_llm_costs(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time
        first = days.get_first_partition_key()
        wanted = [now.date()] + ([now.date() - dt.timedelta(days=1)] if now.hour == 0 else [])
        return [
            dg.RunRequest(partition_key=d.isoformat(), run_key=f"llm_costs:{d}:{now:%Y-%m-%dT%H}")
            for d in wanted
            if first is not None and d.isoformat() >= first
        ]

    return hourly_llm_costs
