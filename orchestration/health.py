"""Health at a glance and alerts: freshness as per-partition asset checks (the OSS catalog and lineage
show a failed check, not a failed FreshnessPolicy), runs whose process died marked failed, and
sensors that send failed runs, failed checks and stale assets to on-call (ragline.monitoring.alerts)."""

import datetime as dt
import hashlib
import socket
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
import psycopg

# Not exported by dagster; it ties a check evaluation recorded outside a run to the materialization
# it judged, as Dagster does itself for a check that runs with its asset.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

# Dagster's tags on a materialization: its data version, and the data version of each input it
# consumed (1.13 records both; not exported from dagster).
from dagster._core.definitions.data_version import DATA_VERSION_TAG, INPUT_DATA_VERSION_TAG_PREFIX

from orchestration.check_gate import HELD_TAG
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
    """One non-blocking check per asset (per source partition on the source assets; once for the
    daily ones): late or never materialized fails, WARN past freshness.warn_hours, ERROR past
    fail_hours or never. See `evaluate_freshness` for what late means."""
    assets = list(assets)
    graph = AssetGraph.from_assets(assets)
    checks = []
    for asset in assets:
        for key in asset.keys:
            partitions_def = asset.specs_by_key[key].partitions_def
            checks.append(_freshness_check(key, partitions_def, graph, settings.freshness))
    return checks


def _check_partitions(asset_partitions: dg.PartitionsDefinition | None) -> dg.PartitionsDefinition | None:
    # Daily assets: one check for the asset. A check partitioned by day would judge days that are
    # not due yet, and leave yesterday's verdict standing when today's partition is built.
    if isinstance(asset_partitions, dg.TimeWindowPartitionsDefinition):
        return None
    return asset_partitions


def _freshness_check(
    key: dg.AssetKey,
    asset_partitions: dg.PartitionsDefinition | None,
    graph: BaseAssetGraph,
    freshness: FreshnessSettings,
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
            description=_freshness_rule(graph, key, freshness),
        )
        def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            partition = context.partition_key if partitions_def is not None else None
            e = evaluate_freshness(context.instance, graph, key, partition, freshness, _now())
            return dg.AssetCheckResult(
                passed=e.passed, severity=e.severity, metadata=e.metadata, description=e.description
            )

    return _check


def _freshness_rule(graph: BaseAssetGraph, key: dg.AssetKey, freshness: FreshnessSettings) -> str:
    windows = f"{freshness.warn_hours:g} h (WARN after), {freshness.fail_hours:g} h (ERROR after, or never)"
    if _judged_by_time(graph, key):
        rule = f"Materialized within {windows}."
    else:
        rule = (
            f"Up to date with its upstream data, and its upstreams fresh: an upstream change not caught up "
            f"within {windows} makes it late."
        )
    return rule + " Recorded by the freshness_checks sensor when the verdict changes."


def _judged_by_time(graph: BaseAssetGraph, key: dg.AssetKey) -> bool:
    # The roots (raw_documents: the daily scan) and the daily quality assets, which are expected to
    # run every day whether or not anything changed; every other asset is as fresh as its inputs.
    node = graph.get(key)
    return not node.parent_keys or isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition)


def evaluate_freshness(
    instance: dg.DagsterInstance,
    graph: BaseAssetGraph,
    key: dg.AssetKey,
    partition: str | None,
    freshness: FreshnessSettings,
    now: dt.datetime,
    judge: "FreshnessJudge | None" = None,
) -> dg.AssetCheckEvaluation:
    """The freshness verdict of the asset's partition at `now` (None: of the asset; for a daily
    asset its newest materialization of any day). A root asset (raw_documents) or a daily asset is
    late when its last materialization is older than the windows. Any other asset is fresh when it
    is up to date with its upstream data (its materialization consumed the upstreams' current data
    versions) and its upstreams are fresh; it is late when an upstream change was not caught up
    within the windows, or when an upstream is late. An unchanged corpus stays fresh."""
    judge = judge or FreshnessJudge(instance, graph, freshness, now)
    return judge.evaluate(key, partition)


@dataclass(frozen=True)
class _Verdict:
    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: dict[str, object]
    target: AssetCheckEvaluationTargetMaterializationData | None
    root_scan_hours: float | None  # age of the oldest root materialization this verdict rests on
    # The problem at its origin (for an asset resting on late data: its late upstream's own problem),
    # the asset partition that has it, and what to do about it.
    cause: str = ""
    culprit: str = ""
    todo: str = ""


def _own(passed, severity, description, metadata, target, root_scan, name) -> _Verdict:
    """A verdict about the asset partition itself (not inherited from an upstream)."""
    todo = str(metadata["what_to_do"])
    return _Verdict(passed, severity, description, metadata, target, root_scan, description, name, todo)


class FreshnessJudge:
    """Freshness verdicts at one instant, each asset partition judged once (the sensor judges the
    whole graph per tick and downstream verdicts rest on upstream ones)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        graph: BaseAssetGraph,
        freshness: FreshnessSettings,
        now: dt.datetime,
    ):
        self.instance, self.graph, self.freshness, self.now = instance, graph, freshness, now
        self._verdicts: dict[tuple[dg.AssetKey, str | None], _Verdict] = {}

    def evaluate(self, key: dg.AssetKey, partition: str | None) -> dg.AssetCheckEvaluation:
        v = self.verdict(key, partition)
        return dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=FRESHNESS_CHECK,
            passed=v.passed,
            severity=v.severity,
            metadata=v.metadata,
            description=v.description,
            target_materialization_data=v.target,
            blocking=False,
            partition=partition,
        )

    def verdict(self, key: dg.AssetKey, partition: str | None) -> _Verdict:
        if (key, partition) not in self._verdicts:
            self._verdicts[key, partition] = self._judge(key, partition)
        return self._verdicts[key, partition]

    def _hours(self, timestamp: float) -> float:
        return (self.now.timestamp() - timestamp) / 3600

    def _late(self, hours: float) -> tuple[bool, dg.AssetCheckSeverity, float]:
        """(passed, severity, the window it is past or within) for something `hours` late."""
        fail, warn = self.freshness.fail_hours, self.freshness.warn_hours
        severity = dg.AssetCheckSeverity.ERROR if hours > fail else dg.AssetCheckSeverity.WARN
        return hours <= warn, severity, fail if hours > fail else warn

    def _judge(self, key: dg.AssetKey, partition: str | None) -> _Verdict:
        node = self.graph.get(key)
        asset_partitions = node.partitions_def
        name = _named(key, partition)
        metadata: dict[str, object] = {
            "partition": partition or "(all: the newest one counts)"
            if asset_partitions
            else "(not partitioned)",
            "warn_after_hours": self.freshness.warn_hours,
            "fail_after_hours": self.freshness.fail_hours,
        }
        if isinstance(asset_partitions, dg.TimeWindowPartitionsDefinition):
            metadata["expected_partition"] = asset_partitions.get_last_partition_key() or "-"
        record = latest_materialization(self.instance, key, partition)
        if record is None and (up := self._worst_upstream(key, partition)) is not None:
            # Not built because what it rests on is not there or late (a new source's chunks while
            # raw_documents waits for its first run): that upstream is the problem.
            metadata |= {
                "freshness_case": "never materialized, and an upstream is late",
                "late_upstream": up.culprit,
                "what_to_do": f"fix {up.culprit} first: {up.todo}",
            }
            description = f"{name} was never materialized; it rests on late data: {up.cause}"
            severity = dg.AssetCheckSeverity.ERROR
            return _Verdict(False, severity, description, metadata, None, None, up.cause, up.culprit, up.todo)
        if record is None:
            command = "ragline materialize" + (f" --source {partition}" if partition else "")
            metadata |= {
                "freshness_case": "never materialized",
                "what_to_do": f"materialize it: `{command}`, or from the UI",
            }
            return _own(
                False,
                dg.AssetCheckSeverity.ERROR,
                f"{name} was never materialized",
                metadata,
                None,
                None,
                name,
            )
        age = self._hours(record.timestamp)
        metadata |= {
            "age_hours": round(age, 2),
            "last_materialized": iso_utc(record.timestamp),
            "last_materialized_partition": record.partition_key or "(not partitioned)",
            "last_run_id": record.run_id,
        }
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        if _judged_by_time(self.graph, key):
            passed, severity, window = self._late(age)
            verb = "scanned" if not node.parent_keys else "last materialized"
            description = f"{name} {verb} {age:.1f} h ago" + (
                "" if passed else f", past the {window:g} h window"
            )
            metadata["freshness_case"] = (
                "materialized within the window" if passed else "not materialized within the window"
            )
            metadata["what_to_do"] = "nothing" if passed else _RERUN
            scan = age if not node.parent_keys else None
            return _own(passed, severity, description, metadata, target, scan, name)
        return self._judge_by_upstream(key, partition, record, name, metadata, target)

    def _judge_by_upstream(self, key, partition, record, name, metadata, target) -> _Verdict:
        upstream_late: list[tuple[str, _Verdict]] = []
        behind: list[tuple[str, float]] = []  # (upstream, when its change not caught up first appeared)
        scans: list[float] = []
        for parent in sorted(self.graph.get(key).parent_keys, key=lambda k: k.to_user_string()):
            parts = self._upstream_partitions(parent, partition)
            for part in parts:
                up = self.verdict(parent, part)
                if not up.passed:
                    upstream_late.append((_named(parent, part), up))
                if up.root_scan_hours is not None:
                    scans.append(up.root_scan_hours)
            changed = self._unconsumed_change(record, parent, parts)
            if changed is not None:
                behind.append((parent.to_user_string(), changed))
        root_scan = max(scans) if scans else None
        if root_scan is not None:
            metadata["oldest_source_scan_hours"] = round(root_scan, 2)
        worst = [
            (n, v) for n, v in upstream_late if v.severity == dg.AssetCheckSeverity.ERROR
        ] or upstream_late
        if behind:
            upstream, since = min(behind, key=lambda b: b[1])
            lag = self._hours(since)
            metadata |= {"upstream_change_hours": round(lag, 2), "upstream_changed": upstream}
            passed, severity, window = self._late(lag)
            if not passed:
                metadata |= {
                    "freshness_case": "has not caught up with an upstream change",
                    "what_to_do": _RERUN,
                }
                description = (
                    f"{name} has not caught up with a change of {upstream} {lag:.0f} h ago, "
                    f"past the {window:g} h window"
                )
                if worst and worst[0][1].severity == dg.AssetCheckSeverity.ERROR:
                    severity = dg.AssetCheckSeverity.ERROR
                return _own(False, severity, description, metadata, target, root_scan, name)
        if worst:
            # Named by the problem at its origin, not by the chain (embeddings rests on chunks, which
            # rests on raw_documents): on-call fixes that one.
            up = worst[0][1]
            metadata |= {
                "freshness_case": "an upstream is late",
                "late_upstream": up.culprit,
                "what_to_do": f"fix {up.culprit} first: {up.todo}",
            }
            description = f"{name} rests on late data: {up.cause}"
            return _Verdict(
                False, up.severity, description, metadata, target, root_scan, up.cause, up.culprit, up.todo
            )
        scanned = f"; sources scanned {root_scan:.0f} h ago at the oldest" if root_scan is not None else ""
        if behind:
            metadata["freshness_case"] = "catching up with an upstream change (within the window)"
            description = (
                f"{name} is catching up with a change of {metadata['upstream_changed']} "
                f"{metadata['upstream_change_hours']:.0f} h ago{scanned}"
            )
        else:
            metadata["freshness_case"] = "up to date with its upstream data"
            description = f"{name} is up to date with its upstream data{scanned}"
        metadata["what_to_do"] = "nothing"
        return _own(True, dg.AssetCheckSeverity.WARN, description, metadata, target, root_scan, name)

    def _worst_upstream(self, key: dg.AssetKey, partition: str | None) -> _Verdict | None:
        """The failing verdict of an upstream partition, ERROR first; None if all pass."""
        late = [
            up
            for parent in sorted(self.graph.get(key).parent_keys, key=lambda k: k.to_user_string())
            for part in self._upstream_partitions(parent, partition)
            if not (up := self.verdict(parent, part)).passed
        ]
        return next((v for v in late if v.severity == dg.AssetCheckSeverity.ERROR), late[0] if late else None)

    def _upstream_partitions(self, parent: dg.AssetKey, partition: str | None) -> list[str | None]:
        parent_partitions = self.graph.get(parent).partitions_def
        if parent_partitions is None:
            return [None]
        if partition is not None:
            return [partition]  # ragline's partitioned deps are per source, partition to partition
        return [
            p
            for p in parent_partitions.get_partition_keys()
            if latest_materialization(self.instance, parent, p)
        ]

    def _unconsumed_change(
        self, record: dg.EventLogRecord, parent: dg.AssetKey, parts: list[str | None]
    ) -> float | None:
        """When the upstream's current data first appeared, if the materialization `record` did not
        consume it (None: it did). Exact where Dagster recorded the input data version on the
        materialization (it matches the upstream's current one); otherwise by time (materialized
        after the current data appeared)."""
        latest = {p: latest_materialization(self.instance, parent, p) for p in parts}
        versions = {p: _data_version(r) for p, r in latest.items() if r is not None}
        consumed = (record.asset_materialization.tags or {}).get(
            f"{INPUT_DATA_VERSION_TAG_PREFIX}/{parent.to_user_string()}"
        )
        cutoff = record.timestamp  # by time: data that appeared before the materialization was consumed
        if consumed is not None and None not in versions.values():
            if parts == [None]:
                expected = versions[None]
            else:  # how Dagster combines the versions of several upstream partitions
                joined = "".join(v for _, v in sorted(versions.items()))
                expected = hashlib.sha256(joined.encode()).hexdigest()
            if consumed == expected:
                return None
            # It consumed other data: a change that appeared after its run started was missed (a
            # change during the run). If all current data is older than the run, the versions can
            # only differ in how they were combined: the time rule decides.
            run = self.instance.get_run_record_by_id(record.run_id) if record.run_id else None
            cutoff = run.start_time if run is not None and run.start_time else cutoff
        appeared = [self._current_version_since(parent, p, v) for p, v in versions.items()]
        newer = [t for t in appeared if t > cutoff]
        return min(newer) if newer else None

    def _current_version_since(self, key: dg.AssetKey, partition: str | None, version: str | None) -> float:
        """The time the partition's current data version first appeared: its materializations walked
        newest to oldest while the version is unchanged (a scan that changed nothing keeps it)."""
        since, cursor = None, None
        for _ in range(_WALK_PAGES):
            result = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
                limit=_WALK_PAGE,
                cursor=cursor,
            )
            for r in result.records:
                if _data_version(r) != version:
                    return since if since is not None else r.timestamp
                since = r.timestamp
            if not result.has_more:
                break
            cursor = result.cursor
        return since if since is not None else 0.0


_WALK_PAGE, _WALK_PAGES = 100, 10
_RERUN = (
    "look for a failed or stuck run of it (Runs), a paused sensor or schedule, or a missing "
    "source folder; then re-materialize it"
)


def _named(key: dg.AssetKey, partition: str | None) -> str:
    return key.to_user_string() + (f"[{partition}]" if partition else "")


def iso_utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None
) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def _data_version(record: dg.EventLogRecord) -> str | None:
    return (record.asset_materialization.tags or {}).get(DATA_VERSION_TAG)


def _verdict(evaluation) -> str:
    """pass, WARN or ERROR; a failure inherited from a late upstream is another verdict (not
    alerted), so that it is recorded again when it becomes the asset's own (alerted)."""
    if evaluation.passed:
        return "pass"
    return evaluation.severity.value + ("_upstream" if "late_upstream" in evaluation.metadata else "")


def stored_verdicts(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, history: int = 50
) -> dict[str | None, str]:
    """The latest recorded verdict of the check per partition (see _verdict)."""
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
        judge = FreshnessJudge(context.instance, graph, settings.freshness, now)
        for check in checks:
            [check_key] = check.check_keys
            stored = stored_verdicts(context.instance, check_key)
            partitions = check.partitions_def.get_partition_keys() if check.partitions_def else [None]
            for partition in partitions:
                e = judge.evaluate(check_key.asset_key, partition)
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


def untested_reason(evaluation: dg.AssetCheckEvaluation | None, limit: int = 200) -> str | None:
    """Why a check could not test anything (assets/checks.py reports it as a failed WARN result
    with `not_tested`; at most `limit` characters), or None for a check that tested."""
    if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.WARN:
        return None
    reason = evaluation.metadata.get("not_tested")
    value = None if reason is None else str(getattr(reason, "value", reason))
    return None if value in (None, "none") else printable(value, limit)


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
    automation run (__ASSET_JOB) or a subset run of a named job (a quality run that held assets)
    names its sorted asset selection, so that one asset's success does not resolve another's failure."""
    job = run.job_name
    if run.asset_selection and (job.startswith("__") or HELD_TAG in run.tags):
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


def _repaired(instance: dg.DagsterInstance, run_id: str | None) -> bool:
    """True when a failed run left assets (partitions) unbuilt and every one of them has
    materialized since it failed: repaired by another run (an automation retry selects only what
    failed, so it has another key), its problem is over."""
    record = instance.get_run_record_by_id(run_id) if run_id else None
    if record is None or record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return False
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_MATERIALIZATION}
    planned, built = set(), set()
    for event_record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = event_record.event_log_entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        is_plan = event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        (planned if is_plan else built).add((event.asset_key, event.partition))
    unbuilt = planned - built
    failed_at = record.end_time or record.update_timestamp.timestamp()
    return bool(unbuilt) and all(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset,
                asset_partitions=[partition] if partition else None,
                after_timestamp=failed_at,
            ),
            limit=1,
        ).records
        for asset, partition in unbuilt
    )


def run_problems(
    instance: dg.DagsterInstance, graph, settings: Settings, now: dt.datetime, already: dict[str, str | None]
):
    """From the runs of the last RUN_WINDOW_HOURS, stateless: the latest finished run per problem
    key decides (FAILURE: a problem, SUCCESS: the key passes). A failure whose unbuilt assets have
    materialized since (by a run of another key) passes too, also once it has left the window.
    `already` maps open keys to the run already recorded, whose failure events are not read again.
    Returns (problems, passing keys, keys still failing as already recorded)."""
    time_defs = _time_partitions(graph)
    problems, passing, still = [], [], []
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
    for key, run_id in already.items():  # open, its run left the window: was it repaired since?
        if key.startswith("run:") and key not in latest and _repaired(instance, run_id):
            passing.append(key)
    for key, run in latest.items():
        if run.status == dg.DagsterRunStatus.SUCCESS or _repaired(instance, run.run_id):
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
            inherited = not evaluation.passed and "late_upstream" in evaluation.metadata
            if (
                (never and target in building)
                or (run_id in failed_runs and _stops_its_run(evaluation))
                or (inherited and check_key.name == FRESHNESS_CHECK)
            ):
                # Neither alerted nor resolved: its first build is on its way, it is the cause of
                # a failed run that is alerted (and names it), or it is late because an upstream
                # is (that upstream's own check is alerted).
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
            # Every open run problem's run too: one that left the window still names its check.
            open_runs = {run_id for key, run_id in already.items() if key.startswith("run:") and run_id}
            failed_runs = frozenset({p.occurrence for p in runs} | open_runs)
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
