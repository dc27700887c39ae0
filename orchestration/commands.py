"""The CLI commands that run through Dagster: in-process materialization and asset status."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import dagster as dg

from ragline.config import Settings
from ragline.safe_text import printable
from ragline.storage.db import DAGSTER_STORAGE_LOCK, database_url, locked, migrate

ASSET_ORDER = (
    "raw_documents",
    "chunks",
    "embeddings",
    "serving_chunks",
    "search_index",
    "eval_set",
    "variant_corpora",
    "retrieval_scores",
    "variant_comparison",
    "drift_metrics",
)


def run_pipeline(
    settings: Settings,
    sources: list[str],
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    day: str | None = None,
    quality: bool = True,
) -> list[tuple[str, dg.ExecuteInProcessResult]]:
    """Run raw_documents -> chunks -> embeddings per source, then search_index, the eval sets and
    variant corpora, then the day's quality assets (default: today, UTC), in this process."""
    from orchestration.definitions import INDEX_JOB, QUALITY_JOB, SOURCE_PIPELINE_JOB, build_definitions

    # execute_in_process runs every step here whatever $RAGLINE_EXECUTOR says: build for that.
    defs = build_definitions(settings, "in_process")
    job = defs.resolve_job_def(SOURCE_PIPELINE_JOB)
    # INFO keeps progress, quarantine warnings and failures on the console; Dagster's DEBUG
    # event stream stays in the instance's event log.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    results = [
        (
            f"source {source}",
            job.execute_in_process(
                partition_key=source, instance=instance, raise_on_error=False, run_config=run_config
            ),
        )
        for source in sources
    ]
    index = defs.resolve_job_def(INDEX_JOB).execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config
    )
    if not quality:
        return [*results, ("search index", index)]
    quality_job = defs.resolve_job_def(QUALITY_JOB)
    day = day or quality_job.partitions_def.get_last_partition_key()
    scores = quality_job.execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False, run_config=run_config
    )
    return [*results, ("search index", index), (f"quality {day}", scores)]


def prepare(settings: Settings) -> list[str]:
    """The explicit setup step (`ragline db migrate`; `ragline materialize` runs it first): apply
    ragline's pending migrations, then create the Dagster instance's tables (dagster.yaml), each
    under an advisory lock, so that processes starting at once do not race to create the same
    relations. Returns the migrations applied now."""
    url = database_url(settings.data_dir)
    applied = migrate(url)
    with locked(url, DAGSTER_STORAGE_LOCK), dg.DagsterInstance.get():
        pass  # opening the instance creates its run, event log and schedule tables if missing
    return applied


def materialize(settings: Settings, sources: list[str], *, day: str | None = None, out=None) -> bool:
    """Prepare the database (`prepare`), run the pipeline, recording runs in the Dagster instance
    (dagster.yaml) and printing a line per run (to `out`, default: the sys.stdout of the call).
    True when every step and every check passed."""
    # Resolved per call: a default bound at import time keeps whatever stdout was current then.
    out = out or sys.stdout
    prepare(settings)
    with dg.DagsterInstance.get() as instance:
        outcomes = [
            _report(result, what, out) for what, result in run_pipeline(settings, sources, instance, day=day)
        ]
    return all(outcomes)


def _report(result: dg.ExecuteInProcessResult, what: str, out) -> bool:
    failed = [e for e in result.all_events if e.is_step_failure]
    checks_failed = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    ]
    status = "ok" if result.success and not checks_failed else "FAILED"
    print(f"{what}: {status} (run {result.run_id[:8]})", file=out)
    for e in failed:
        print(
            f"  step {e.step_key} failed: {printable(e.event_specific_data.error.message.strip())}", file=out
        )
    for c in checks_failed:
        print(f"  check {c.asset_key.to_user_string()}.{c.check_name} failed", file=out)
    return result.success and not checks_failed


def status(settings: Settings) -> dict[str, Any]:
    """Per asset and source: the last materialization, its row counts and the latest checks."""
    from orchestration.definitions import build_definitions

    defs = build_definitions(settings, "in_process")  # the graph only; no executor needed
    graph = defs.resolve_asset_graph()
    report: dict[str, Any] = {"assets": []}
    with dg.DagsterInstance.get() as instance:
        for name in ASSET_ORDER:
            key = dg.AssetKey(name)
            node = graph.get(key)
            partitions = _partitions_to_report(instance, key, node.partitions_def)
            check_keys = sorted(graph.get_check_keys_for_assets({key}), key=lambda k: k.name)
            history = {
                # Enough history to reach back to each partition's latest run.
                ck.name: instance.event_log_storage.get_asset_check_execution_history(
                    ck, limit=max(100, 20 * len(partitions))
                )
                for ck in check_keys
            }
            for partition in partitions:
                report["assets"].append(_asset_row(instance, key, partition, history, settings))
    report["quality"] = quality_summary(settings)
    failing = [
        f"{a['asset']}[{a['partition']}].{c}" if a["partition"] else f"{a['asset']}.{c}"
        for a in report["assets"]
        for c, s in a["checks"].items()
        if s != "passed"
    ]
    report["failing_checks"] = failing
    report["stale"] = [a["asset"] for a in report["assets"] if a["freshness"] == "fail"]
    report["healthy"] = (
        not failing and not report["stale"] and all(a["materialized_at"] for a in report["assets"])
    )
    return report


def _partitions_to_report(instance, key: dg.AssetKey, partitions_def) -> list[str | None]:
    if partitions_def is None:
        return [None]
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # Daily assets: the latest partition that was materialized (or today's, if none was).
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
        return [records[0].partition_key if records else partitions_def.get_last_partition_key()]
    return list(partitions_def.get_partition_keys())


def quality_summary(settings: Settings) -> dict[str, Any]:
    """The latest retrieval scores with their change since the previous partition, and drift."""
    from ragline.evaluation.scoring import latest_scores
    from ragline.monitoring.drift import latest_drift
    from ragline.storage.db import Database

    with Database(database_url(settings.data_dir), max_size=1) as db, db.connection() as conn:
        return {"scores": latest_scores(conn), "drift": latest_drift(conn)}


def _asset_row(
    instance, key: dg.AssetKey, partition: str | None, history, settings: Settings
) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    row: dict[str, Any] = {
        "asset": key.to_user_string(),
        "partition": partition,
        "materialized_at": None,
        "run_id": None,
        "rows": None,
        "metadata": {},
        "checks": {},
        "freshness": "unknown",
    }
    if records:
        record = records[0]
        mat = record.asset_materialization
        row["materialized_at"] = dt.datetime.fromtimestamp(record.timestamp, dt.UTC).isoformat(
            timespec="seconds"
        )
        row["run_id"] = record.run_id
        # The same windows as the assets' FreshnessPolicy, which the UI's asset health shows.
        age_hours = (dt.datetime.now(dt.UTC).timestamp() - record.timestamp) / 3600
        row["freshness"] = (
            "fail"
            if age_hours > settings.freshness.fail_hours
            else "warn"
            if age_hours > settings.freshness.warn_hours
            else "pass"
        )
        meta = {k: getattr(v, "value", v) for k, v in (mat.metadata or {}).items()}
        row["rows"] = meta.pop("dagster/row_count", None)
        row["metadata"] = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))}
    for check, executions in history.items():
        # Checks emitted by a partitioned asset are stored without a partition; the ones that
        # judged this partition's data ran in the same run as its latest materialization.
        latest = next((e for e in executions if e.run_id == row["run_id"]), None)
        row["checks"][check] = _check_status(latest)
    return row


def _check_status(execution) -> str:
    if execution is None:
        return "not run"
    status = execution.status.value.lower()
    if status == "succeeded":
        evaluation = execution.event.asset_check_evaluation if execution.event else None
        if evaluation is not None and not evaluation.passed:
            return "failed"
        return "passed"
    return status


def format_status(report: dict[str, Any]) -> str:
    lines = [f"{'asset':<19} {'partition':<14} {'rows':>7}  {'last materialized':<26} checks"]
    for a in report["assets"]:
        checks = ", ".join(f"{k}={v}" for k, v in a["checks"].items()) or "-"
        passed = sum(v == "passed" for v in a["checks"].values())
        summary = f"{passed}/{len(a['checks'])} passed" if a["checks"] else "-"
        lines.append(
            f"{a['asset']:<19} {a['partition'] or '-':<14} {a['rows'] if a['rows'] is not None else '-':>7}  "
            f"{a['materialized_at'] or 'never':<26} {summary}"
        )
        if any(v != "passed" for v in a["checks"].values()):
            lines.append(f"{'':<21}{checks}")
        if a["freshness"] in ("warn", "fail"):
            lines.append(f"{'':<21}freshness: {a['freshness']} (last materialized {a['materialized_at']})")
        if a["metadata"].get("quarantined"):
            lines.append(
                f"{'':<21}quarantined files: {a['metadata']['quarantined']} (see ragline.quarantine)"
            )
    lines.extend(_format_quality(report.get("quality") or {}))
    lines.append("")
    if report["stale"]:
        lines.append("STALE (past the freshness window): " + ", ".join(report["stale"]))
    if report["failing_checks"]:
        lines.append("FAILING: " + ", ".join(report["failing_checks"]))
    lines.append("healthy" if report["healthy"] else "NOT healthy: see above")
    return "\n".join(lines)


def _format_quality(quality: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    scores = quality.get("scores") or []
    if scores:
        lines += [
            "",
            f"retrieval scores ({scores[0]['partition']}; change since {scores[0]['previous'] or '-'})",
        ]
        header = ("variant", "eval set", "nDCG@10", "change", "recall", "MRR", "p95 ms")
        lines.append("  {:<20} {:<14} {:>8} {:>8} {:>7} {:>6} {:>7}".format(*header))
        for r in scores:
            delta = f"{r['ndcg_delta']:+.4f}" if r["ndcg_delta"] is not None else "-"
            lines.append(
                f"  {r['variant']:<20} {r['eval_set']:<14} {r['ndcg']:>8.4f} {delta:>8} {r['recall']:>7.3f} "
                f"{r['mrr']:>6.3f} {r['latency_p95_ms']:>7.1f}"
            )
    drift = quality.get("drift") or []
    if drift:
        lines += ["", f"drift ({drift[0]['partition']})"]
        for r in drift:
            verdict = "ALARM" if r["alarm"] else ("skipped: " + r["reason"] if r["reason"] else "ok")
            p = f"new {r['effect']:>4.0%} p={r['p_value']:.3f}" if r["p_value"] is not None else ""
            lines.append(f"  {r['scope']:<20} {r['subject']:<14} {p:<22} {verdict}")
            if r["alarm"] and r["new_content"]:
                lines.append(f"      new content in {printable(r['new_content'], limit=160)}")
    return lines
