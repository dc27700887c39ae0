"""Health at a glance and alerts: freshness as per-partition asset checks (the OSS catalog and lineage
show a failed check, not a failed FreshnessPolicy), runs whose process died marked failed, and
sensors that send failed runs, failed checks and stale assets to on-call (ragline.monitoring.alerts)."""

import datetime as dt
import socket
import warnings
from collections.abc import Iterable

import dagster as dg
import psycopg

# Not exported by dagster; it ties a check evaluation recorded outside a run to the materialization
# it judged, as Dagster does itself for a check that runs with its asset.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from orchestration.resources import PARTITION_TAG, RaglineResource
from orchestration.run_process import HOST_TAG, PID_TAG, PROCESS_START_TAG, process_alive
from ragline.config import FreshnessSettings, Settings
from ragline.monitoring import alerts
from ragline.safe_text import printable

FRESHNESS_CHECK = "is_materialized_and_fresh"
FRESHNESS_JOB = "freshness_check_runs"
HEALTH_INTERVAL_SECONDS = 60


# --- freshness checks ----------------------------------------------------------------------------


def freshness_checks(
    assets: Iterable[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetChecksDefinition]:
    """One non-blocking check per asset: late or never materialized fails (WARN past
    freshness.warn_hours, ERROR past fail_hours or never). Per source partition on the source
    assets; once for the others (a daily asset is as fresh as its newest day)."""
    checks = []
    for asset in assets:
        for key in asset.keys:
            partitions_def = asset.specs_by_key[key].partitions_def
            checks.append(_freshness_check(key, partitions_def, settings.freshness))
    return checks


def _check_partitions(asset_partitions: dg.PartitionsDefinition | None) -> dg.PartitionsDefinition | None:
    # Daily assets: one check for the asset. A check partitioned by day would judge days that are
    # not due yet, and leave yesterday's verdict standing when today's partition is built.
    if isinstance(asset_partitions, dg.TimeWindowPartitionsDefinition):
        return None
    return asset_partitions


def _freshness_check(
    key: dg.AssetKey, asset_partitions: dg.PartitionsDefinition | None, freshness: FreshnessSettings
) -> dg.AssetChecksDefinition:
    partitions_def = _check_partitions(asset_partitions)
    with warnings.catch_warnings():
        # Partitioned checks are a preview in 1.13; without one, executions of a partitioned asset's
        # check are stored without their partition and the latest partition hides the others.
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset_check(
            asset=key,
            name=FRESHNESS_CHECK,
            partitions_def=partitions_def,
            blocking=False,
            description=(
                f"Materialized within {freshness.warn_hours:g} h (WARN after), {freshness.fail_hours:g} h "
                "(ERROR after, or never). Recorded by the freshness_checks sensor when it changes."
            ),
        )
        def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            partition = context.partition_key if partitions_def is not None else None
            e = evaluate_freshness(context.instance, key, asset_partitions, partition, freshness, _now())
            return dg.AssetCheckResult(
                passed=e.passed, severity=e.severity, metadata=e.metadata, description=e.description
            )

    return _check


def evaluate_freshness(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    asset_partitions: dg.PartitionsDefinition | None,
    partition: str | None,
    freshness: FreshnessSettings,
    now: dt.datetime,
) -> dg.AssetCheckEvaluation:
    """The freshness verdict of the asset's partition (None: of the asset, its newest materialization
    of any partition) at `now`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    name = key.to_user_string() + (f"[{partition}]" if partition else "")
    metadata: dict[str, object] = {
        "partition": partition or "(all: the newest one counts)" if asset_partitions else "(not partitioned)",
        "warn_after_hours": freshness.warn_hours,
        "fail_after_hours": freshness.fail_hours,
    }
    if isinstance(asset_partitions, dg.TimeWindowPartitionsDefinition):
        metadata["expected_partition"] = asset_partitions.get_last_partition_key() or "-"
    target = None
    if not records:
        passed, severity = False, dg.AssetCheckSeverity.ERROR
        description = f"{name} was never materialized"
        command = "ragline materialize" + (f" --source {partition}" if partition else "")
        todo = f"materialize it: `{command}`, or from the UI"
    else:
        record = records[0]
        age = (now.timestamp() - record.timestamp) / 3600
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        metadata |= {
            "age_hours": round(age, 2),
            "last_materialized": dt.datetime.fromtimestamp(record.timestamp, dt.UTC).isoformat(
                timespec="seconds"
            ),
            "last_materialized_partition": record.partition_key or "(not partitioned)",
            "last_run_id": record.run_id,
        }
        passed = age <= freshness.warn_hours
        severity = dg.AssetCheckSeverity.ERROR if age > freshness.fail_hours else dg.AssetCheckSeverity.WARN
        window = freshness.fail_hours if age > freshness.fail_hours else freshness.warn_hours
        description = f"{name} last materialized {age:.1f} h ago" + (
            "" if passed else f", past the {window:g} h window"
        )
        todo = (
            "nothing"
            if passed
            else "look for a failed or stuck run of it (Runs), a paused sensor or schedule, or a missing "
            "source folder; then re-materialize it"
        )
    metadata["what_to_do"] = todo
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=FRESHNESS_CHECK,
        passed=passed,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=target,
        blocking=False,
        partition=partition,
    )


def _verdict(evaluation) -> str:
    return "pass" if evaluation.passed else evaluation.severity.value


def stored_verdicts(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, history: int = 50
) -> dict[str | None, str]:
    """The latest recorded verdict of the check per partition (pass, WARN or ERROR)."""
    out: dict[str | None, str] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=history):
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:  # planned or running: no verdict yet
            out.setdefault(record.partition, _verdict(evaluation))
    return out


def freshness_sensor(settings: Settings, checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    partitioned = [c for c in checks if c.partitions_def is not None]

    @dg.sensor(
        name="freshness_checks",
        description="Every minute: records each asset's (and source partition's) freshness check when "
        "its verdict changes; late or never materialized turns the catalog and lineage yellow or red.",
        minimum_interval_seconds=HEALTH_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=dg.define_asset_job(
            FRESHNESS_JOB,
            selection=dg.AssetSelection.checks(*partitioned),
            description="Records the freshness checks of one source partition (started by freshness_checks).",
        ),
    )
    def freshness_checks_sensor(context: dg.SensorEvaluationContext):
        # Compared with the stored verdicts, not a cursor: nothing is lost or repeated after a restart.
        # A verdict is recorded when it changes, not every minute (a row per partition per minute).
        # Unpartitioned checks are recorded here, as events outside any run. Dagster 1.13 stores such
        # events with run_id '' under a unique (check, run_id, partition) index, so a partition's
        # second one would be refused: a partition's new verdict is recorded by a small run of its
        # checks instead (only on a change: fresh to late, late to fresh, never to built).
        graph = context.repository_def.asset_graph
        now, events, due = _now(), [], {}
        for check in checks:
            [check_key] = check.check_keys
            asset_partitions = graph.get(check_key.asset_key).partitions_def
            stored = stored_verdicts(context.instance, check_key)
            partitions = check.partitions_def.get_partition_keys() if check.partitions_def else [None]
            for partition in partitions:
                e = evaluate_freshness(
                    context.instance,
                    check_key.asset_key,
                    asset_partitions,
                    partition,
                    settings.freshness,
                    now,
                )
                if stored.get(partition) == _verdict(e):
                    continue
                if partition is None:
                    events.append(e)
                else:
                    due.setdefault(partition, []).append((check_key, _verdict(e)))
        requests = [
            # All the partition's freshness checks: a subset of a job of checks loses its partition.
            dg.RunRequest(
                run_key=f"freshness:{partition}:"
                + ",".join(f"{k.asset_key.to_user_string()}={v}" for k, v in found)
                + f":{int(now.timestamp() // 3600)}",
                # The partition as a tag, not partition_key: Dagster 1.13 resolves a job of checks
                # alone without the PartitionsDefinition it was given, and refuses partition_key.
                tags={PARTITION_TAG: partition},
            )
            for partition, found in sorted(due.items())
        ]
        return dg.SensorResult(run_requests=requests, asset_events=events)

    return freshness_checks_sensor


# --- dead runs -----------------------------------------------------------------------------------


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every STARTED run tagged with this host whose process is gone (killed, crashed,
    the machine rebooted); returns their run ids. Dagster's run monitoring covers runs that a run
    launcher started, but not in-process runs (`ragline materialize`): nothing else watches them."""
    host = socket.gethostname()
    failed = []
    for record in instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags={HOST_TAG: host})
    ):
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid), run.tags.get(PROCESS_START_TAG, "")):
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue  # it finished while we looked
        instance.report_run_failed(
            current,
            f"The process that ran this run (pid {pid} on {printable(host)}) is gone: killed or crashed "
            "while the run was STARTED. Marked failed by the dead_runs sensor. Re-run it (ragline "
            "materialize, or re-execute from the UI); a partition's run lock was released with the process.",
        )
        failed.append(run.run_id)
    return failed


def dead_runs_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="dead_runs",
        description="Marks failed the STARTED runs whose process on this host is gone (kill -9, crash).",
        minimum_interval_seconds=HEALTH_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def dead_runs(context: dg.SensorEvaluationContext):
        failed = fail_dead_runs(context.instance)
        return dg.SkipReason(f"marked failed: {', '.join(failed)}" if failed else "no dead run")

    return dead_runs


# --- alerts --------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _link(settings: Settings, path: str) -> str | None:
    return f"{settings.alerts.ui_url.rstrip('/')}/{path}" if settings.alerts.ui_url else None


def _root_cause(error) -> str:
    """The error that started it (Dagster wraps a step's exception in its own)."""
    if error is None:
        return "(no error recorded)"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


RUN_WINDOW_HOURS = 48  # runs the alert sweep reads each tick (the latest per job and partition counts)
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def untested_reason(evaluation: dg.AssetCheckEvaluation | None) -> str | None:
    """Why a check could not test anything (assets/checks.py reports it as a failed WARN result
    with `not_tested`), or None for a check that tested."""
    if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.WARN:
        return None
    reason = evaluation.metadata.get("not_tested")
    value = None if reason is None else str(getattr(reason, "value", reason))
    return None if value in (None, "none") else printable(value, 200)


def _time_partitions(graph) -> list[dg.TimeWindowPartitionsDefinition]:
    found = {}
    for key in graph.get_all_asset_keys():
        p = graph.get(key).partitions_def
        if isinstance(p, dg.TimeWindowPartitionsDefinition):
            found[id(p)] = p
    return list(found.values())


def _is_time_partition(partition: str | None, time_defs: list[dg.TimeWindowPartitionsDefinition]) -> bool:
    """A day (or other time window), not a source: its problem is the job's or check's, judged by
    the newest day, so that a pass on day D+1 resolves a failure on day D."""
    if not partition:
        return False
    for p in time_defs:
        try:
            p.time_window_for_partition_key(partition)
            return True
        except Exception:  # not this definition's format
            continue
    return False


def run_problem_key(run: dg.DagsterRun, time_defs: list[dg.TimeWindowPartitionsDefinition]) -> str:
    """run:<job>:<partition>; a day is not part of the key (the newest day's run decides), and an
    automation run (__ASSET_JOB) names its sorted asset selection, so that one asset's success does
    not resolve another's failure."""
    job = run.job_name
    if job.startswith("__") and run.asset_selection:
        job += "[" + ",".join(sorted(k.to_user_string() for k in run.asset_selection)) + "]"
    partition = run.tags.get(PARTITION_TAG)
    if _is_time_partition(partition, time_defs):
        return f"run:{job}"
    return f"run:{job}:{partition or '-'}"


def _deliver(context, conn: psycopg.Connection, settings: Settings) -> alerts.Delivery:
    result = alerts.deliver(conn, settings.alerts, _now())
    for error in result.errors or []:
        context.log.warning(f"alert not delivered (retried next tick): {error}")
    return result


def _stops_its_run(evaluation) -> bool:
    return (
        evaluation is not None
        and not evaluation.passed
        and evaluation.blocking
        and evaluation.severity == dg.AssetCheckSeverity.ERROR
    )


def _run_failure(instance: dg.DagsterInstance, run: dg.DagsterRun, key: str, settings: Settings):
    partition = run.tags.get(PARTITION_TAG)
    errors, checks, message = [], [], ""
    kinds = {
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    for record in instance.get_records_for_run(run.run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            errors.append(f"step {event.step_key}: {_root_cause(event.step_failure_data.error)}")
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            message = event.message or ""
        elif _stops_its_run(evaluation := event.asset_check_evaluation_data):
            checks.append(f"check {evaluation.check_name} of {evaluation.asset_key.to_user_string()}")
    # A blocking check that failed is the cause: named here, and not alerted on its own (check_problems).
    cause = f": {checks[0]} failed" if checks else ""
    detail = "\n".join([*(f"{c} failed" for c in checks[:3]), *errors[:3], message]).strip()
    return alerts.Problem(
        key=key,
        title=f"run of {run.job_name}"
        + (f" [{partition}]" if partition else "")
        + f" failed ({run.run_id[:8]}){cause}",
        detail=f"{detail}\nWhat to do: read the run's logs, fix the cause, re-run the job or partition.",
        link=_link(settings, f"runs/{run.run_id}"),
        occurrence=run.run_id,
    )


def run_problems(
    instance: dg.DagsterInstance, graph, settings: Settings, now: dt.datetime, already: dict[str, str | None]
):
    """From the runs of the last RUN_WINDOW_HOURS, stateless: the latest finished run per problem
    key decides (FAILURE: a problem, SUCCESS: the key passes). `already` maps open keys to the run
    already recorded, whose failure events are not read again. Returns (problems, passing keys,
    keys still failing as already recorded)."""
    time_defs = _time_partitions(graph)
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=now - dt.timedelta(hours=RUN_WINDOW_HOURS),
        ),
        order_by="create_timestamp",
        ascending=False,
    )
    latest: dict[str, dg.DagsterRun] = {}
    for record in records:  # newest first
        latest.setdefault(run_problem_key(record.dagster_run, time_defs), record.dagster_run)
    problems, passing, still = [], [], []
    for key, run in latest.items():
        if run.status == dg.DagsterRunStatus.SUCCESS:
            passing.append(key)
        elif already.get(key) == run.run_id:
            still.append(key)  # recorded on an earlier tick: its failure events are not read again
        else:
            problems.append(_run_failure(instance, run, key, settings))
    return problems, passing, still


def _in_progress_targets(instance: dg.DagsterInstance, repository) -> set[tuple[dg.AssetKey, str]]:
    """(asset, partition) of every queued or running run, and (asset, "*"): a never-materialized
    asset that such a run will build is not alerted yet."""
    targets = set()
    for run in instance.get_runs(dg.RunsFilter(statuses=_IN_PROGRESS)):
        keys = run.asset_selection
        if keys is None and repository is not None and repository.has_job(run.job_name):
            keys = repository.get_job(run.job_name).asset_layer.selected_asset_keys
        for key in keys or ():
            targets |= {(key, run.tags.get(PARTITION_TAG) or "-"), (key, "*")}
    return targets


def check_problems(
    instance: dg.DagsterInstance,
    check_keys: Iterable[dg.AssetCheckKey],
    settings: Settings,
    repository: dg.RepositoryDefinition | None = None,
    failed_runs: frozenset[str] = frozenset(),
):
    """The latest completed evaluation of each check and partition: (problems, keys that pass, keys
    left as they are).
    A check without a partition of its own takes the partition of the run that evaluated it. A
    time-partitioned asset's check is one problem, judged by its newest day. Not tested (a WARN
    with not_tested) is no problem; nor is never-materialized while a run that builds it is queued
    or running."""
    problems, passing, waiting = [], [], []
    storage = instance.event_log_storage
    time_defs = _time_partitions(repository.asset_graph) if repository is not None else []
    building = _in_progress_targets(instance, repository)
    for check_key in sorted(check_keys, key=lambda k: k.to_user_string()):
        latest: dict[str, object] = {}
        history = storage.get_asset_check_execution_history(check_key, limit=100)
        run_ids = list({h.run_id for h in history if h.run_id})
        runs = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(run_ids=run_ids))} if run_ids else {}
        for record in history:  # newest first
            evaluation = record.event.asset_check_evaluation if record.event else None
            if evaluation is None:
                continue  # planned, in progress, or skipped: not a verdict
            run = runs.get(record.run_id)
            partition = (
                evaluation.partition or record.partition or (run.tags.get(PARTITION_TAG) if run else None)
            )
            latest.setdefault(partition or "-", (record.id, evaluation, record.run_id))
        name = f"check:{check_key.asset_key.to_user_string()}.{check_key.name}"
        days = sorted(p for p in latest if _is_time_partition(p, time_defs))
        verdicts = {f"{name}:{p}": (p, v) for p, v in latest.items() if p not in days}
        if days:  # the newest day decides; "-" (judged as a whole) only if no day was judged
            verdicts = {name: (days[-1], latest[days[-1]])}
        for key, (partition, (execution_id, evaluation, run_id)) in verdicts.items():
            never = evaluation.metadata.get("last_run_id") is None and check_key.name == FRESHNESS_CHECK
            target = (check_key.asset_key, "*" if days or partition == "-" else partition)
            if (never and target in building) or (run_id in failed_runs and _stops_its_run(evaluation)):
                # Neither alerted nor resolved: its first build is on its way, or it is the cause of
                # a failed run that is alerted (and names it).
                waiting.append(key)
                continue
            if evaluation.passed or untested_reason(evaluation) is not None:
                passing.append(key)
                continue
            where = check_key.asset_key.to_user_string() + (f"[{partition}]" if partition != "-" else "")
            facts = [
                f"{k}: {getattr(v, 'value', v)}"
                for k, v in evaluation.metadata.items()
                if isinstance(getattr(v, "value", v), (str, int, float, bool))
                and len(str(getattr(v, "value", v))) <= 300
            ][:12]
            problems.append(
                alerts.Problem(
                    key=key,
                    title=f"check {check_key.name} of {where} failed",
                    detail="\n".join([evaluation.description or "", *facts]).strip(),
                    severity="warn" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error",
                    link=_link(settings, f"assets/{'/'.join(check_key.asset_key.path)}?view=checks"),
                    occurrence=str(execution_id),
                )
            )
    return problems, passing, waiting


def _check_keys_known(graph) -> set[str]:
    """Every check problem key the definitions can produce: per partition of a source asset, one
    for a daily or unpartitioned asset."""
    known = set()
    for check_key in graph.asset_check_keys:
        name = f"check:{check_key.asset_key.to_user_string()}.{check_key.name}"
        partitions_def = graph.get(check_key.asset_key).partitions_def
        known |= {name, f"{name}:-"}
        if partitions_def is not None and not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            known |= {f"{name}:{p}" for p in partitions_def.get_partition_keys()}
    return known


def _forgotten(open_keys: Iterable[str], reported: set[str], repository, time_defs) -> list[str]:
    """Open keys that no tick will report again: a check key of a check or source partition that no
    longer exists, or with a day in it; a run key of a job that no longer exists, or with a day in
    it (keys of earlier versions). A known key not reported stays open: its last verdict failed
    (one that left the history has no newer verdict, or that verdict would be in it)."""
    checks = _check_keys_known(repository.asset_graph)
    out = []
    for key in open_keys:
        if key in reported:
            continue
        kind, _, rest = key.partition(":")
        if kind == "check" and key not in checks:
            out.append(key)
        elif kind == "run":
            job, _, partition = rest.partition(":")
            known = job.startswith("__") or repository.has_job(job)
            if not known or _is_time_partition(partition, time_defs):
                out.append(key)
    return out


def check_alerts_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="check_alerts",
        description="Alerts on-call about failed runs and failed checks (freshness included) per "
        "partition, resolves them when they pass again, and retries sends that failed.",
        minimum_interval_seconds=HEALTH_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def check_alerts(context: dg.SensorEvaluationContext, ragline: RaglineResource):
        # Stateless: every tick re-derives the problems from the runs and check evaluations Dagster
        # stored, so a tick whose database write failed loses nothing (the next one does it again);
        # ragline.alerts deduplicates by key.
        repository = context.repository_def
        graph = repository.asset_graph
        now = _now()
        with ragline.database().connection() as conn:
            already = {r["key"]: r["last_occurrence"] for r in alerts.open_problems(conn)}
            runs, runs_passing, still = run_problems(context.instance, graph, settings, now, already)
            failed_runs = frozenset({p.occurrence for p in runs} | {already[k] for k in still})
            checks, passing, waiting = check_problems(
                context.instance, graph.asset_check_keys, settings, repository, failed_runs
            )
            for problem in checks + runs:
                alerts.record_problem(conn, settings.alerts, problem, now)
            reported = {p.key for p in checks + runs} | {*passing, *runs_passing, *still, *waiting}
            gone = _forgotten(already, reported, repository, _time_partitions(graph))
            for key in [*passing, *runs_passing, *gone]:
                alerts.record_recovery(conn, settings.alerts, key, now)
            result = _deliver(context, conn, settings)
        return dg.SkipReason(
            f"{len(checks)} failing check partitions, {len(runs)} failed runs; {result.sent} messages "
            f"sent, {result.failed} sends failed"
        )

    return check_alerts


def health_sensors(settings: Settings, checks: list[dg.AssetChecksDefinition]) -> list[dg.SensorDefinition]:
    return [
        freshness_sensor(settings, checks),
        dead_runs_sensor(),
        check_alerts_sensor(settings),
    ]
