"""Metering: the model calls an asset makes go to llm_calls with the asset's key, partition and run,
and their tokens and cost to its materialization's metadata."""

import functools
from collections.abc import Callable

import dagster as dg

from orchestration.resources import RaglineResource
from ragline.costs import Caller, postgres_sink
from ragline.endpoints import calls_recorded_by


def metered(body: Callable[..., dg.MaterializeResult]) -> Callable[..., dg.MaterializeResult]:
    """Decorate an asset's function (under @dg.asset; it takes `context` and the `ragline`
    resource): its model calls are recorded as this run's, and llm_tokens_in/out, llm_cost_usd and
    model_calls are added to the MaterializeResult's metadata."""

    @functools.wraps(body)  # Dagster reads the resources from the wrapped function's signature
    def run(context: dg.AssetExecutionContext, **resources) -> dg.MaterializeResult:
        ragline: RaglineResource = resources["ragline"]
        caller = Caller(
            kind="asset",
            asset_key=context.asset_key.to_user_string(),
            partition=context.partition_key if context.has_partition_key else None,
            run_id=context.run.run_id,
        )
        sink = postgres_sink(ragline.database(), caller, ragline.settings().prices)
        with calls_recorded_by(sink):
            result = body(context, **resources)
        totals = sink.totals
        if totals.unpriced_models:
            context.log.warning(
                f"no price in prices: for {', '.join(sorted(totals.unpriced_models))}; "
                "their calls are in llm_calls with cost NULL"
            )
        return dg.MaterializeResult(
            asset_key=result.asset_key,
            metadata={**(result.metadata or {}), **totals.metadata()},
            check_results=result.check_results,
            data_version=result.data_version,
            tags=result.tags,
        )

    return run
