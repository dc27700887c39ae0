"""The CLI commands that run through Dagster: in-process materialization and asset status."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Set as AbstractSet
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.snap import snapshot_from_execution_plan
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from orchestration.check_gate import HELD_TAG, held_assets, held_summary, held_tag
from orchestration.health import (
    FRESHNESS_CHECK,
    FreshnessJudge,
    iso_utc,
    latest_materialization,
    untested_reason,
)
from orchestration.launch import DEFINITIONS_MODULE
from ragline.config import Settings
from ragline.monitoring.board import (
    BAD,
    ab_verdict,
    drift_verdict,
    headline,
    pinned_this_run,
    unmeasured_summary,
)
from ragline.safe_text import printable
from ragline.storage.db import DAGSTER_STORAGE_LOCK, database_url, locked, migrate

# The code location's name in the UI: [tool.dg.project] code_location_name in pyproject.toml.
CODE_LOCATION = "ragline"

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
    "answer_scores",
    "annotation_queue",
)


class PipelineRuns(list["tuple[str, dg.ExecutionResult]"]):  # dg.ExecutionResult: annotations only
    """run_pipeline's runs as (what, result), in order; `held`: the quality assets left out of the
    quality run (asset -> the failed blocking checks that hold it), `day`: that run's partition."""

    def __init__(self, runs: list[tuple[str, dg.ExecutionResult]], day: str | None = None) -> None:
        super().__init__(runs)
        self.day = day
        self.held: dict[dg.AssetKey, tuple[str, ...]] = {}

    @property
    def quality(self) -> str | None:
        """The quality run's label in the list ("quality 2026-11-29"), if the pipeline had one."""
        return f"quality {self.day}" if self.day else None


def run_pipeline(
    settings: Settings,
    sources: list[str],
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    day: str | None = None,
    quality: bool = True,
) -> PipelineRuns:
    """Run raw_documents -> chunks -> embeddings per source, then search_index, the eval sets and
    variant corpora, then the day's quality assets (default: today, UTC), in this process, as runs
    of the code location's named jobs (they show on the job pages and the timeline of the UI).
    Quality assets downstream of a blocking check that failed at ERROR are held (not run)."""
    from orchestration.definitions import INDEX_JOB, QUALITY_JOB, SOURCE_PIPELINE_JOB, build_definitions

    # Every step runs here whatever $RAGLINE_EXECUTOR says: build for that.
    defs = build_definitions(settings, "in_process")
    # INFO keeps progress, quarantine warnings and failures on the console; Dagster's DEBUG
    # event stream stays in the instance's event log.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}

    def run(
        job_name: str,
        partition: str | None = None,
        assets: AbstractSet[dg.AssetKey] | None = None,
        tags: dict[str, str] | None = None,
    ) -> dg.ExecutionResult:
        job = defs.resolve_job_def(job_name)
        return run_named_job(job, instance, run_config, partition, settings, assets, tags)

    results = [(f"source {source}", run(SOURCE_PIPELINE_JOB, source)) for source in sources]
    results.append(("search index", run(INDEX_JOB)))
    if not quality:
        return PipelineRuns(results)
    quality_job = defs.resolve_job_def(QUALITY_JOB)
    day = day or quality_job.partitions_def.get_last_partition_key()
    runs = PipelineRuns(results, day=day)
    keys = sorted(quality_job.asset_layer.executable_asset_keys, key=_asset_rank)
    runs.held = held_assets(instance, defs.resolve_asset_graph(), keys)
    if len(runs.held) < len(keys):
        # A subset run of the job (the UI shows its asset selection); nothing held: the whole job.
        runnable = {k for k in keys if k not in runs.held} if runs.held else None
        tags = {HELD_TAG: held_tag(runs.held)} if runs.held else None
        runs.append((runs.quality, run(QUALITY_JOB, day, runnable, tags)))
    return runs


def _asset_rank(key: dg.AssetKey) -> tuple[int, str]:
    name = key.to_user_string()
    return (ASSET_ORDER.index(name) if name in ASSET_ORDER else len(ASSET_ORDER), name)


def code_location_origin(settings: Settings) -> RemoteRepositoryOrigin:
    """The repository of the code location that `make dev` (dg dev) serves: runs created with it
    are listed on the job pages and in the timeline of the UI, like the daemon's runs."""
    target = LoadableTargetOrigin(
        executable_path=sys.executable,
        module_name=DEFINITIONS_MODULE,
        attribute="defs",
        working_directory=str(settings.project_dir),
    )
    return RemoteRepositoryOrigin(
        code_location_origin=ManagedGrpcPythonEnvCodeLocationOrigin(target, CODE_LOCATION),
        repository_name=SINGLETON_REPOSITORY_NAME,
    )


def run_named_job(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    run_config: dict[str, Any],
    partition: str | None,
    settings: Settings,
    assets: AbstractSet[dg.AssetKey] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> dg.ExecutionResult:
    """What execute_in_process does, but the run carries the code location's job origin (an
    in-process run has none, so the UI did not link it to its job). `assets`: run only these of the
    job's assets, with the job's checks of them (a run of the job with that asset selection);
    `extra_tags`: added to the run's tags (HELD_TAG on a quality run that held assets)."""
    subset = job
    if assets is not None:
        checks = {c for c in job.asset_layer.asset_graph.asset_check_keys if c.asset_key in assets}
        # An explicit check selection: with none, Dagster adds every check of the assets, including
        # the freshness checks that the job leaves to their sensor.
        subset = job.get_subset(asset_selection=set(assets), asset_check_selection=checks)
    tags = {**merge_run_tags(subset, partition, None, None, instance, run_config), **(extra_tags or {})}
    instance_ref = instance.get_ref() if instance.is_persistent else None
    plan = create_execution_plan(subset, run_config=run_config, tags=tags, instance_ref=instance_ref)
    run = instance.create_run(
        job_name=job.name,
        run_id=None,
        run_config=run_config,
        status=None,
        tags=tags,
        root_run_id=None,
        parent_run_id=None,
        step_keys_to_execute=plan.step_keys_to_execute,
        execution_plan_snapshot=snapshot_from_execution_plan(plan, subset.get_job_snapshot_id()),
        job_snapshot=subset.get_job_snapshot(),
        parent_job_snapshot=subset.get_parent_job_snapshot(),
        asset_selection=subset.asset_selection,
        asset_check_selection=subset.asset_check_selection,
        resolved_op_selection=None,
        op_selection=None,
        remote_job_origin=code_location_origin(settings).get_job_origin(job.name),
        job_code_origin=None,
        asset_graph=subset.asset_layer.asset_graph,
    )
    # execute_run takes the subset of `job` that the run selects.
    return execute_run(InMemoryJob(job), run, instance)


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
        runs = run_pipeline(settings, sources, instance, day=day)
        outcomes = [_report(result, what, out, partial=bool(runs.held)) for what, result in runs]
    if runs.held:
        if all(what != runs.quality for what, _ in runs):
            print(f"{runs.quality}: skipped (every asset held)", file=out)
        print(
            f"  held: {held_summary(runs.held)}; once the check passes, "
            f"`ragline materialize --date {runs.day}` scores the day",
            file=out,
        )
        outcomes.append(False)
    return all(outcomes)


def _report(result: dg.ExecutionResult, what: str, out, partial: bool = False) -> bool:
    """One line per run (ok / FAILED, or partial: a quality run that held assets), then its failures."""
    failed = [e for e in result.all_events if e.is_step_failure]
    evaluations = [
        e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    checks_failed = [c for c in evaluations if not c.passed and untested_reason(c) is None]
    status = "ok" if result.success and not checks_failed else "FAILED"
    if status == "ok" and partial and what.startswith("quality "):
        status = "partial"  # what ran passed; the held assets were not run (the `held:` line)
    print(f"{what}: {status} (run {result.run_id[:8]})", file=out)
    for e in failed:
        print(
            f"  step {e.step_key} failed: {printable(e.event_specific_data.error.message.strip())}", file=out
        )
    for c in checks_failed:
        print(f"  check {c.asset_key.to_user_string()}.{c.check_name} failed", file=out)
    for c in evaluations:
        if (reason := untested_reason(c)) is not None:
            print(
                f"  check {c.asset_key.to_user_string()}.{c.check_name} warn (not tested: {reason})", file=out
            )
    return result.success and not checks_failed


def status(settings: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per asset and source: the last run, the last materialization with its row counts and age
    against the freshness window, and the latest checks; then the quality figures of the database."""
    from orchestration.definitions import build_definitions

    now = now or dt.datetime.now(dt.UTC)
    defs = build_definitions(settings, "in_process")  # the graph only; no executor needed
    graph = defs.resolve_asset_graph()
    report: dict[str, Any] = {
        "generated_at": now.isoformat(timespec="seconds"),
        "config": str(settings.path),
        "freshness_window": {
            "warn_hours": settings.freshness.warn_hours,
            "fail_hours": settings.freshness.fail_hours,
        },
        "assets": [],
    }
    with dg.DagsterInstance.get() as instance:
        judge = FreshnessJudge(instance, graph, settings.freshness, now)  # the freshness checks' rule
        for name in ASSET_ORDER:
            key = dg.AssetKey(name)
            node = graph.get(key)
            partitions = _partitions_to_report(instance, key, node.partitions_def)
            check_keys = sorted(
                # freshness is its own column (the same windows as the freshness checks)
                (k for k in graph.get_check_keys_for_assets({key}) if k.name != FRESHNESS_CHECK),
                key=lambda k: k.name,
            )
            names = [ck.name for ck in check_keys]
            for partition in partitions:
                row = _asset_row(instance, key, partition, names, judge, now)
                row["last_run"] = _last_run(instance, key, partition, row["run_id"])
                report["assets"].append(row)
    report["quality"] = quality_summary(settings, now)

    def checks_in(*states: str, known: bool = True) -> list[str]:
        return [
            f"{_named(a)}.{c}"
            for a in report["assets"]
            if a["materialized_at"]  # a partition never materialized is reported as such
            for c, s in a["checks"].items()
            if (s in states) == known
        ]

    report["failing_checks"] = checks_in(*CHECK_STATES, known=False) + checks_in("failed")
    report["warning_checks"] = checks_in("warn")
    report["untested_checks"] = checks_in("not tested")
    report["checks_not_run"] = checks_in("not run")
    report["stale"] = [_named(a) for a in report["assets"] if a["freshness"] == "fail"]
    report["never_materialized"] = [_named(a) for a in report["assets"] if not a["materialized_at"]]
    # A WARN result and a check that could not test are shown, but do not make the report unhealthy.
    # One verdict for the exit code, the text and the board: the board's headline (a failing check,
    # a check that did not run, a stale or never materialized partition, or a failed last run).
    report["healthy"] = headline(report)[0] != BAD
    return report


def _named(row: dict[str, Any]) -> str:
    return f"{row['asset']}[{row['partition']}]" if row["partition"] else row["asset"]


# What _check_status reports for a check of an asset partition.
CHECK_STATES = ("passed", "failed", "warn", "not tested", "not run")


def _partitions_to_report(instance, key: dg.AssetKey, partitions_def) -> list[str | None]:
    if partitions_def is None:
        return [None]
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # Daily assets: the latest partition that was materialized (or today's, if none was).
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
        return [records[0].partition_key if records else partitions_def.get_last_partition_key()]
    return list(partitions_def.get_partition_keys())


def quality_summary(settings: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    """The latest retrieval scores with their change since the previous partition and the regression
    gate's interval, the latest A/B comparisons, drift, and what the database records of the day's
    work (`now`'s UTC day)."""
    from ragline.evaluation.answer_scoring import (
        judge_agreement_rows,
        latest_answer_comparisons,
        latest_answer_scores,
    )
    from ragline.evaluation.scoring import latest_comparisons, latest_gates, latest_scores
    from ragline.monitoring.drift import latest_drift
    from ragline.monitoring.usage import usage_since
    from ragline.storage.db import Database

    day_start = (
        (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    with Database(database_url(settings.data_dir), max_size=1) as db, db.connection() as conn:
        scores = latest_scores(conn)
        return {
            "scores": scores,
            "gates": latest_gates(conn, scores, settings.evaluation),
            "comparisons": latest_comparisons(conn),
            "confidence": settings.evaluation.confidence,
            "drift": latest_drift(conn),
            "usage": usage_since(conn, day_start),
            "answers": latest_answer_scores(conn),
            "answer_comparisons": latest_answer_comparisons(conn),
            "judge_agreement": judge_agreement_rows(conn),
        }


def _asset_row(
    instance,
    key: dg.AssetKey,
    partition: str | None,
    checks: list[str],
    judge: FreshnessJudge,
    now: dt.datetime,
) -> dict[str, Any]:
    record = latest_materialization(instance, key, partition)
    row: dict[str, Any] = {
        "asset": key.to_user_string(),
        "partition": partition,
        "materialized_at": None,
        "age_hours": None,
        "run_id": None,
        "rows": None,
        "metadata": {},
        "checks": {},
        "check_notes": {},
        "freshness": "unknown",
        "freshness_note": None,
        "freshness_cause": None,
    }
    if record is not None:
        mat = record.asset_materialization
        row["materialized_at"] = iso_utc(record.timestamp)
        row["run_id"] = record.run_id
        age_hours = (now.timestamp() - record.timestamp) / 3600
        row["age_hours"] = round(age_hours, 3)
        # The freshness checks' verdict: an asset that is up to date with unchanged upstream data is
        # fresh however old its last materialization (orchestration/health.py, evaluate_freshness).
        verdict = judge.verdict(key, partition)
        row["freshness"] = (
            "pass"
            if verdict.passed
            else "fail"
            if verdict.severity == dg.AssetCheckSeverity.ERROR
            else "warn"
        )
        row["freshness_note"] = printable(verdict.description, 300)
        row["freshness_cause"] = printable(verdict.cause, 300)  # the late upstream's problem, if any
        meta = {k: getattr(v, "value", v) for k, v in (mat.metadata or {}).items()}
        row["rows"] = meta.pop("dagster/row_count", None)
        row["metadata"] = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))}
    # The checks that judged this partition's data ran in the run of its latest materialization:
    # read that run's events (a bounded check history loses a quiet source's runs behind busy ones).
    planned, evaluations = (
        _checks_of_run(instance, row["run_id"], key, partition) if row["run_id"] else (set(), {})
    )
    for check in checks:
        row["checks"][check], note = _check_status(check in planned, evaluations.get(check))
        if note:
            row["check_notes"][check] = note
    return row


def _last_run(instance, key: dg.AssetKey, partition: str | None, materialized_by: str | None) -> dict | None:
    """The latest run planned to materialize this asset (partition), whether or not it did: a run
    that failed or was stopped by a blocking check is newer than the last materialization."""
    planned = instance.get_latest_planned_materialization_info(key, partition)
    run_id = planned.run_id if planned else materialized_by
    record = instance.get_run_record_by_id(run_id) if run_id else None
    if record is None:
        return None

    def when(timestamp: float | None) -> str | None:
        return iso_utc(timestamp) if timestamp else None

    run = record.dagster_run
    return {
        "run_id": run_id,
        "job": run.job_name,
        "status": run.status.value,
        "started_at": when(record.start_time) or record.create_timestamp.isoformat(timespec="seconds"),
        "ended_at": when(record.end_time),
    }


def _checks_of_run(
    instance, run_id: str, key: dg.AssetKey, partition: str | None
) -> tuple[set[str], dict[str, dg.AssetCheckEvaluation]]:
    """The checks of `key` that run `run_id` planned, and their evaluations of `partition` (a
    partitioned check's result for another partition of the same run does not count)."""
    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        },
    ).records
    planned: set[str] = set()
    evaluations: dict[str, dg.AssetCheckEvaluation] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        if data is None or data.asset_key != key:
            continue
        planned.add(data.check_name)
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and (
            partition is None or getattr(data, "partition", None) in (None, partition)
        ):
            evaluations[data.check_name] = data
    return planned, evaluations


def _check_status(planned: bool, evaluation: dg.AssetCheckEvaluation | None) -> tuple[str, str]:
    """A check of the run that materialized the partition as (state, note): passed, failed, warn (a
    failed WARN check), not tested (with the reason), or not run; the note is what the check's
    metadata says to do or look at."""
    if evaluation is None:
        # Not in the run that materialized the partition, or planned there and never evaluated.
        return "not run", "planned, but the run ended before it was evaluated" if planned else ""
    if evaluation.passed:
        return "passed", ""
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    if evaluation.severity == dg.AssetCheckSeverity.ERROR:
        return "failed", printable(meta.get("what_to_do") or meta.get("where_to_look") or "", 300)
    # A check that could not test is a failed WARN result whose not_tested says why (assets/checks.py).
    if (reason := untested_reason(evaluation, limit=300)) is not None:
        return "not tested", reason
    return "warn", printable(meta.get("what_to_do") or meta.get("where_to_look") or "", 300)


def format_status(report: dict[str, Any]) -> str:
    lines = [f"{'asset':<19} {'partition':<14} {'rows':>7}  {'last materialized':<26} checks"]
    for a in report["assets"]:
        checks = ", ".join(f"{k}={_check_text(v, a['check_notes'].get(k))}" for k, v in a["checks"].items())
        passed = sum(v == "passed" for v in a["checks"].values())
        summary = f"{passed}/{len(a['checks'])} passed" if a["checks"] else "-"
        lines.append(
            f"{a['asset']:<19} {a['partition'] or '-':<14} {a['rows'] if a['rows'] is not None else '-':>7}  "
            f"{a['materialized_at'] or 'never':<26} {summary}"
        )
        if any(v != "passed" for v in a["checks"].values()):
            lines.append(f"{'':<21}{checks}")
        if a["freshness"] in ("warn", "fail"):
            lines.append(f"{'':<21}freshness: {a['freshness']} ({a['freshness_note']})")
        if a["metadata"].get("quarantined"):
            lines.append(
                f"{'':<21}quarantined files: {a['metadata']['quarantined']} (see ragline.quarantine)"
            )
    lines.extend(_format_quality(report.get("quality") or {}, pinned_this_run(report)))
    lines.append("")
    for title, key in (
        ("STALE (past the freshness window)", "stale"),
        ("NEVER MATERIALIZED", "never_materialized"),
        ("FAILING", "failing_checks"),
        ("CHECKS NOT RUN", "checks_not_run"),
        ("WARNING", "warning_checks"),
    ):
        if report.get(key):
            lines.append(f"{title}: " + ", ".join(report[key]))
    untested = report["untested_checks"]
    if not report["healthy"]:
        lines.append(f"{headline(report)[1]} (see above)")
    elif untested:
        # Healthy, but not silently: a check that could not test is no evidence either way.
        n = len(untested)
        lines.append(f"healthy, {n} check{'s' if n > 1 else ''} could not test: " + ", ".join(untested))
    else:
        lines.append("healthy")
    return "\n".join(lines)


def _check_text(state: str, note: str | None) -> str:
    return f"warn (not tested: {note})" if state == "not tested" else state


def _format_quality(quality: dict[str, Any], pinned: bool = False) -> list[str]:
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
    lines.extend(_format_answers(quality))
    drift = quality.get("drift") or []
    if drift:
        lines += ["", f"drift ({drift[0]['partition']})"]
        for r in drift:
            verdict = drift_verdict(r, pinned)[0]
            if r["p_value"] is None and r["reason"]:
                verdict += f": {r['reason']}"
            p = f"new {r['effect']:>4.0%} p={r['p_value']:.3f}" if r["p_value"] is not None else ""
            lines.append(f"  {r['scope']:<20} {r['subject']:<14} {p:<22} {verdict}")
            if r["alarm"] and r["new_content"]:
                lines.append(f"      new content in {printable(r['new_content'], limit=160)}")
    llm = (quality.get("usage") or {}).get("llm")
    if llm:
        unpriced = f"; no price for {', '.join(llm['unpriced_models'])}" if llm["unpriced_models"] else ""
        tokens = f"{llm['prompt_tokens']}/{llm['completion_tokens']}"
        lines += [
            "",
            f"model calls today: {llm['calls']} ({llm['failed']} failed), tokens in/out {tokens}, "
            f"${llm['cost_usd']:.4f}{printable(unpriced, 200)}",
        ]
    return lines


def _format_answers(quality: dict[str, Any]) -> list[str]:
    """The latest answer scores: mean [interval], change since the previous partition, the gate's
    paired interval and verdict, and the unmeasured questions; then the A/B rows."""
    answers = quality.get("answers") or []
    if not answers:
        return []
    lines = ["", f"answer scores ({answers[0]['partition']}; change since {answers[0]['previous'] or '-'})"]
    header = ("variant", "eval set", "metric", "mean [interval]", "change", "gate [interval]", "unmeasured")
    lines.append("  {:<14} {:<12} {:<18} {:<22} {:>8}  {:<40} {}".format(*header))
    for r in answers:
        mean = f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]" if r["mean"] is not None else "-"
        delta = f"{r['delta']:+.3f}" if r["delta"] is not None else "-"
        if r["gate_diff"] is not None:
            gate = f"{r['gate_diff']:+.3f} [{r['gate_low']:+.3f}, {r['gate_high']:+.3f}] {r['gate_verdict']}"
        else:
            gate = (r.get("gate_details") or {}).get("reason") or r.get("gate_verdict") or "not gated"
        lines.append(
            f"  {printable(r['variant'], 14):<14} {printable(r['eval_set'], 12):<12} {r['metric']:<18} "
            f"{mean:<22} {delta:>8}  {printable(gate, 40):<40} "
            f"{unmeasured_summary(r['questions'], r['unmeasured'], r.get('samples'))}"
        )
    for c in quality.get("answer_comparisons") or []:
        diff = f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" if c["diff"] is not None else "-"
        lines.append(
            f"  A/B {printable(c['candidate'], 14)} vs {printable(c['baseline'], 14)} on "
            f"{printable(c['eval_set'], 12)}: {c['metric']} {diff} {printable(ab_verdict(c), 80)}"
        )
    for a in quality.get("judge_agreement") or []:
        lines.append(f"  judge agreement: {printable(a, 160)}")
    return lines
