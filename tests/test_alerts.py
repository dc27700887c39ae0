"""On-call health: freshness checks per partition, dead runs marked failed, and alerts delivered
to a real local HTTP receiver (Slack-compatible and generic JSON) and a real local SMTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from orchestration import health
from orchestration.check_gate import HELD_TAG
from orchestration.commands import _asset_row
from orchestration.definitions import build_definitions
from orchestration.health import (
    FRESHNESS_CHECK,
    FRESHNESS_JOB,
    RUN_WINDOW_HOURS,
    FreshnessJudge,
    check_alerts_sensor,
    evaluate_freshness,
    fail_dead_runs,
    run_problem_key,
)
from orchestration.resources import PARTITION_TAG, RaglineResource
from orchestration.run_process import HOST_TAG, PID_TAG
from ragline.config import ConfigError, load_settings
from ragline.monitoring import alerts
from tests.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import REPO, write_project

SLACK_PATH = "/services/T000/B000/XXXXSECRETTOKEN"


def alert_project(tmp_path: Path, smtp_port: int, **alerts_overrides):
    folder = tmp_path / "corpus" / "handbook"
    folder.mkdir(parents=True)
    (folder / "leave.md").write_text("# Leave\n\nAsk your manager two weeks ahead.\n", encoding="utf-8")
    block = {
        "reminder_hours": 24,
        "ui_url": "http://localhost:3000",
        "slack": {"url_env": "RAGLINE_TEST_SLACK_URL"},
        "webhook": {"url_env": "RAGLINE_TEST_WEBHOOK_URL"},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "ragline@example.org",
            "recipients": ["oncall@example.org"],
        },
        **alerts_overrides,
    }
    sources = [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}]
    return write_project(tmp_path, sources, alerts=block)


@dg.op
def flaky_step() -> None:
    if os.environ.get("RAGLINE_TEST_BREAK") == "1":
        raise RuntimeError("source folder not mounted: /mnt/share/handbook")


@dg.job
def flaky():
    flaky_step()


def run_flaky(instance: dg.DagsterInstance, monkeypatch, broken: bool) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("RAGLINE_TEST_BREAK", "1" if broken else "0")
    return flaky.execute_in_process(instance=instance, raise_on_error=False)


def alert_tick(defs: dg.Definitions, instance: dg.DagsterInstance, settings) -> None:
    """One tick of check_alerts, as the daemon runs it."""
    resources = {"ragline": RaglineResource(config_path=str(settings.path))}
    sensor = defs.resolve_sensor_def("check_alerts")
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        sensor.evaluate_tick(context)


def test_failed_run_alerts_once_everywhere_then_reminds_then_resolves(db_url, tmp_path, monkeypatch):
    with WebhookReceiver() as http, SmtpReceiver() as smtp:
        monkeypatch.setenv("RAGLINE_TEST_SLACK_URL", http.url(SLACK_PATH))
        monkeypatch.setenv("RAGLINE_TEST_WEBHOOK_URL", http.url("/hooks/ragline"))
        settings = alert_project(tmp_path, smtp.port)
        defs = build_definitions(settings)
        instance = dg.DagsterInstance.ephemeral()

        # Stateless: each tick reads the runs Dagster stored, so a failure is alerted by the next
        # tick whatever happened to earlier ones (no cursor that moves on when a write fails).
        first = run_flaky(instance, monkeypatch, broken=True)
        assert not first.success
        alert_tick(defs, instance, settings)
        alert_tick(defs, instance, settings)  # the same failed run again: nothing new
        [slack] = http.bodies(SLACK_PATH)
        [hook] = http.bodies("/hooks/ragline")
        [mail] = smtp.mails
        assert slack["text"].startswith("FAILED: run of flaky failed")
        assert "source folder not mounted" in slack["text"] and slack["blocks"][0]["type"] == "section"
        assert hook["kind"] == "alert" and hook["key"] == "run:flaky:-" and hook["state"] == "open"
        assert hook["link"] == f"http://localhost:3000/runs/{first.run_id}"
        assert mail["Subject"].startswith("[ragline] FAILED: run of flaky failed")
        assert mail.envelope_to == ["oncall@example.org"]
        assert "source folder not mounted" in mail.get_content()

        # The same job failing again is the same open problem: counted, not sent again.
        run_flaky(instance, monkeypatch, broken=True)
        alert_tick(defs, instance, settings)
        assert len(http.posts) == 2 and len(smtp.mails) == 1
        with psycopg.connect(db_url) as conn:
            [row] = alerts.open_problems(conn, "run:")
            assert row["occurrences"] == 2
            # Still open a day later: one reminder per destination, then nothing until the next day.
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
            assert alerts.deliver(conn, settings.alerts, later).sent == 3
            assert alerts.deliver(conn, settings.alerts, later + dt.timedelta(hours=1)).sent == 0
        assert "still open since" in http.bodies("/hooks/ragline")[1]["text"]
        assert http.bodies("/hooks/ragline")[1]["kind"] == "reminder" and len(smtp.mails) == 2

        # Recovery: the job succeeds, one resolve message per destination; another success is silent.
        for _ in range(2):
            run_flaky(instance, monkeypatch, broken=False)
            alert_tick(defs, instance, settings)
        assert [b["kind"] for b in http.bodies("/hooks/ragline")] == ["alert", "reminder", "resolve"]
        assert http.bodies(SLACK_PATH)[-1]["text"].startswith("RESOLVED: run of flaky failed")
        assert smtp.mails[-1]["Subject"].startswith("[ragline] RESOLVED:")
        assert len(http.posts) == 6 and len(smtp.mails) == 3
        with psycopg.connect(db_url) as conn:
            assert alerts.open_problems(conn) == []


def test_failed_sends_are_retried_and_never_name_the_secret(db_url, tmp_path, monkeypatch):
    with WebhookReceiver(fail_first=1) as http:
        closed = SmtpReceiver()
        port = closed.port
        closed.server.server_close()  # nothing listens there any more: connection refused
        monkeypatch.setenv("RAGLINE_TEST_SLACK_URL", http.url(SLACK_PATH))
        monkeypatch.setenv("RAGLINE_TEST_WEBHOOK_URL", http.url("/hooks/ragline"))
        monkeypatch.setenv("RAGLINE_TEST_SMTP_PASSWORD", "hunter2-smtp")
        settings = alert_project(tmp_path, port)
        smtp = {
            **settings.alerts.smtp.__dict__,
            "username": "ragline",
            "password_env": "RAGLINE_TEST_SMTP_PASSWORD",
        }
        block = settings.alerts.__dict__ | {"smtp": type(settings.alerts.smtp)(**smtp)}
        config = type(settings.alerts)(**block)
        now = dt.datetime.now(dt.UTC)
        problem = alerts.Problem(key="run:source_pipeline:handbook", title="run of source_pipeline failed")
        with psycopg.connect(db_url, autocommit=True) as conn:
            alerts.record_problem(conn, config, problem, now)
            first = alerts.deliver(conn, config, now)
            # The Slack webhook answered 500 and SMTP refused: both still owed; the JSON webhook got it.
            assert (first.sent, first.failed) == (1, 2)
            text = " ".join(first.errors)
            assert "Slack webhook at 127.0.0.1: HTTP 500" in text and f"smtp at 127.0.0.1:{port}" in text
            assert "SECRETTOKEN" not in text and "hooks/ragline" not in text and "hunter2" not in text
            second = alerts.deliver(conn, config, now)
            assert (second.sent, second.failed) == (1, 1)  # Slack now; SMTP still down
            [row] = alerts.open_problems(conn)
            assert (
                row["owed"] == "alert" and row["owed_to"] == ["smtp"] and "hunter2" not in row["last_error"]
            )
        assert [p["path"] for p in http.posts] == ["/hooks/ragline", SLACK_PATH]

        # A warning that turns into an error is alerted again; repeats of either are not.
        late = alerts.Problem(
            key="check:chunks.is_materialized_and_fresh:handbook", title="late", severity="warn"
        )
        with psycopg.connect(db_url, autocommit=True) as conn:
            outcomes = [
                alerts.record_problem(conn, config, p, now)
                for p in (late, late, replace(late, severity="error"), replace(late, severity="error"))
            ]
        assert outcomes == ["opened", "repeated", "escalated", "repeated"]


class LockProbe:
    """A destination that, while it sends, asks another connection for the row's lock (NOWAIT): it
    fails if delivery holds a transaction open across the send."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url, self.keys = url, []

    def send(self, message: alerts.Message) -> None:
        with psycopg.connect(self.url) as other:
            other.execute("SELECT 1 FROM ragline.alerts WHERE key = %s FOR UPDATE NOWAIT", (message.key,))
        self.keys.append(message.key)


def test_delivery_is_capped_skips_a_failing_destination_and_locks_nothing_while_sending(
    db_url, tmp_path, monkeypatch
):
    with WebhookReceiver(fail_first=100) as http:
        monkeypatch.setenv("RAGLINE_TEST_SLACK_URL", http.url(SLACK_PATH))
        monkeypatch.setenv("RAGLINE_TEST_WEBHOOK_URL", http.url("/hooks/ragline"))
        settings = alert_project(tmp_path, 1, smtp=None)
        now = dt.datetime.now(dt.UTC)
        probe = LockProbe(db_url)
        slack = alerts.destinations(settings.alerts)[0]
        with psycopg.connect(db_url, autocommit=True) as conn:
            for i in range(25):
                problem = alerts.Problem(key=f"run:job_{i:02d}:-", title=f"run {i} failed")
                alerts.record_problem(conn, settings.alerts, problem, now)
            first = alerts.deliver(conn, settings.alerts, now, senders=[slack, probe])
            # 20 problems this call; Slack answered 500 once and was not tried 19 more times.
            assert (first.sent, first.failed, len(probe.keys)) == (20, 1, 20)
            second = alerts.deliver(conn, settings.alerts, now, senders=[slack, probe])
            assert (second.sent, second.failed, len(probe.keys)) == (5, 1, 25)
            assert {r["owed_to"][0] for r in alerts.open_problems(conn)} == {"slack"}

        # Resolved while its alert is being sent: the destination that just got the alert is owed
        # the resolve (the send holds no lock, so the recovery does not wait for it).
        class Resolver(LockProbe):
            def send(self, message: alerts.Message) -> None:
                with psycopg.connect(self.url, autocommit=True) as other:
                    other.execute("SET lock_timeout = '5s'")
                    alerts.record_recovery(other, settings.alerts, message.key, now)

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM ragline.alerts")
            alerts.record_problem(conn, settings.alerts, alerts.Problem(key="run:race:-", title="x"), now)
            alerts.deliver(conn, settings.alerts, now, senders=[Resolver(db_url)])
            row = conn.execute("SELECT state, owed, owed_to FROM ragline.alerts").fetchone()
            assert row == ("resolved", "resolve", ["webhook"])


def test_a_message_always_refused_blocks_no_other(db_url, tmp_path, monkeypatch):
    """HTTP 400 refuses that message only: the destination still gets the others, and the refused
    row goes after them; 5xx (the test above) marks the destination down for the call."""
    with WebhookReceiver(reject="poison") as http:
        monkeypatch.setenv("RAGLINE_TEST_WEBHOOK_URL", http.url("/hooks/ragline"))
        settings = alert_project(tmp_path, 1, slack=None, smtp=None)
        now = dt.datetime.now(dt.UTC)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for i, title in enumerate(["poison message", "a failed", "b failed", "c failed"]):
                problem = alerts.Problem(key=f"run:job_{i}:-", title=title)
                alerts.record_problem(conn, settings.alerts, problem, now + dt.timedelta(seconds=i))
            first = alerts.deliver(conn, settings.alerts, now, limit=2)
            assert (first.sent, first.failed) == (1, 1) and "HTTP 400" in first.errors[0]
            second = alerts.deliver(conn, settings.alerts, now, limit=2)
            assert (second.sent, second.failed) == (2, 0)
            assert [b["title"] for b in http.bodies("/hooks/ragline")] == ["a failed", "b failed", "c failed"]
            [owed] = [r for r in alerts.open_problems(conn) if r["owed"]]
            assert owed["title"] == "poison message" and "HTTP 400" in owed["last_error"]


def test_freshness_checks_per_partition_fail_when_missing_or_late_and_recover(db_url, tmp_path):
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("freshness_checks")
    checks_job = defs.resolve_job_def(FRESHNESS_JOB)

    def tick():
        """One freshness tick as the daemon runs it (events recorded, runs executed), then check_alerts."""
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        for request in result.run_requests:
            assert checks_job.execute_in_process(instance=instance, tags=request.tags).success
        alert_tick(defs, instance, settings)
        return result

    def open_keys():
        with psycopg.connect(db_url) as conn:
            return {r["key"] for r in alerts.open_problems(conn, "check:")}

    def latest(asset: str, partition: str | None):
        key = dg.AssetCheckKey(dg.AssetKey(asset), FRESHNESS_CHECK)
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
        return next(h.event.asset_check_evaluation for h in history if h.partition == partition and h.event)

    # A new source whose first run is queued: never materialized, but not alerted while it waits.
    queued = instance.create_run_for_job(
        defs.resolve_job_def("source_pipeline"),
        asset_selection=frozenset({dg.AssetKey("raw_documents")}),
        tags={PARTITION_TAG: "handbook"},
    )
    assert queued.status == dg.DagsterRunStatus.NOT_STARTED
    first = tick()
    assert f"check:raw_documents.{FRESHNESS_CHECK}:handbook" not in open_keys()
    # Nor are its downstream partitions, whose verdicts name raw_documents as the culprit.
    assert not {k for k in open_keys() if k.endswith(":handbook")}
    inherited = latest("chunks", "handbook")
    assert not inherited.passed and inherited.metadata["late_upstream"].value == "raw_documents[handbook]"
    instance.report_run_canceled(queued)
    # Unpartitioned assets (and daily ones, as a whole) are recorded as events; the source
    # partition by one run of its four checks.
    assert {e.asset_key.to_user_string() for e in first.asset_events} == {
        "search_index",
        "eval_set",
        "variant_corpora",
        "retrieval_scores",
        "variant_comparison",
        "drift_metrics",
        "answer_scores",
        "annotation_queue",
    }
    [request] = first.run_requests
    assert request.tags["dagster/partition"] == "handbook"
    missing = latest("raw_documents", "handbook")
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    assert "never materialized" in missing.description and missing.metadata["partition"].value == "handbook"
    assert "ragline materialize --source handbook" in missing.metadata["what_to_do"].value

    # Nothing changed: nothing recorded again; the run was canceled, so the alert opens now: one
    # for the source, none for what rests on it.
    again = tick()
    assert again.asset_events == [] and again.run_requests == []
    source = f"check:raw_documents.{FRESHNESS_CHECK}:handbook"
    assert {k for k in open_keys() if k.endswith(":handbook")} == {source}

    # A materialization: that partition's check passes again (here already in the run, which
    # selected the asset and so its checks), and on the next tick its alert resolves.
    defs.resolve_job_def("source_pipeline").execute_in_process(
        instance=instance, partition_key="handbook", asset_selection=[dg.AssetKey("raw_documents")]
    )
    fresh = tick()
    assert fresh.asset_events == []
    recovered = latest("raw_documents", "handbook")
    assert recovered.passed and recovered.metadata["age_hours"].value < 1
    assert f"check:raw_documents.{FRESHNESS_CHECK}:handbook" not in open_keys()
    assert f"check:chunks.{FRESHNESS_CHECK}:handbook" in open_keys()

    # The same materialization judged later: past warn_hours WARN, past fail_hours ERROR.
    key = dg.AssetKey("raw_documents")
    graph = defs.resolve_asset_graph()
    now = dt.datetime.now(dt.UTC)
    for hours, severity in (
        (settings.freshness.warn_hours + 1, "WARN"),
        (settings.freshness.fail_hours + 1, "ERROR"),
    ):
        at = now + dt.timedelta(hours=hours)
        late = evaluate_freshness(instance, graph, key, "handbook", settings.freshness, at)
        assert not late.passed and late.severity.value == severity
        assert late.metadata["age_hours"].value > hours - 0.1
        assert "re-materialize" in late.metadata["what_to_do"].value


def test_daily_problems_are_judged_by_the_newest_day_and_stale_keys_resolve(db_url, tmp_path):
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    graph = defs.resolve_asset_graph()
    by_name = {k.name: k for k in graph.asset_check_keys}
    ndcg, untested = by_name["ndcg_at_10_has_not_regressed"], by_name["queries_have_not_drifted"]

    def judge(check: dg.AssetCheckKey, day: str, passed: bool, **metadata):
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=check.asset_key,
                check_name=check.name,
                passed=passed,
                severity=dg.AssetCheckSeverity.WARN if metadata else dg.AssetCheckSeverity.ERROR,
                metadata=metadata,
                partition=day,
            )
        )

    def open_keys():
        with psycopg.connect(db_url) as conn:
            return {r["key"] for r in alerts.open_problems(conn)}

    ndcg_key = f"check:{ndcg.asset_key.to_user_string()}.{ndcg.name}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Left open by earlier versions or configurations: a dated key, a removed source's, a dated
        # run key; and one that is still known (its source exists) without a verdict in the history.
        kept = f"check:raw_documents.{FRESHNESS_CHECK}:handbook"
        for key in (
            f"{ndcg_key}:2026-11-20",
            f"check:raw_documents.{FRESHNESS_CHECK}:gone_source",
            "run:quality_pipeline:2026-11-20",
            kept,
        ):
            old = alerts.Problem(key=key, title="old")
            alerts.record_problem(conn, settings.alerts, old, dt.datetime.now(dt.UTC))
    judge(ndcg, "2026-11-28", passed=False)
    judge(untested, "2026-11-28", passed=False, not_tested="too few rows (3 < 20)")
    alert_tick(defs, instance, settings)
    # One problem for the check, not one per day; a check that could not test alerts nobody.
    assert open_keys() == {ndcg_key, kept}
    judge(ndcg, "2026-11-29", passed=True)  # the next day passes: the problem is over
    alert_tick(defs, instance, settings)
    assert open_keys() == {kept}

    # Runs: a day is not part of the key; an automation run's key names its assets.
    days = [graph.get(ndcg.asset_key).partitions_def]

    def key(job: str, partition: str, *assets: str, held: str | None = None) -> str:
        run = dg.DagsterRun(
            job_name=job,
            tags={PARTITION_TAG: partition, **({HELD_TAG: held} if held else {})},
            asset_selection=frozenset(dg.AssetKey(a) for a in assets) or None,
        )
        return run_problem_key(run, days)

    assert key("quality_pipeline", "2026-11-28") == key("quality_pipeline", "2026-11-29")
    assert key("quality_pipeline", "2026-11-28") == "run:quality_pipeline"
    assert key("source_pipeline", "handbook") == "run:source_pipeline:handbook"
    assert key("__ASSET_JOB", "2026-11-28", "b", "a") == "run:__ASSET_JOB[a,b]"
    assert key("__ASSET_JOB", "2026-11-28", "c") != key("__ASSET_JOB", "2026-11-28", "a")
    # A quality run that held assets (drift_metrics only) does not resolve the whole job's failure.
    partial = key("quality_pipeline", "2026-11-29", "drift_metrics", held="retrieval_scores")
    assert partial == "run:quality_pipeline[drift_metrics]" != key("quality_pipeline", "2026-11-28")


@dg.asset(check_specs=[dg.AssetCheckSpec("handbook_is_complete", asset="handbook_copy", blocking=True)])
def handbook_copy() -> dg.MaterializeResult:
    complete = os.environ.get("RAGLINE_TEST_BREAK") != "1"
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(passed=complete, metadata={"missing": 0 if complete else 3})]
    )


def test_a_blocking_check_that_fails_its_run_is_one_alert(db_url, tmp_path, monkeypatch):
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    defs = dg.Definitions(assets=[handbook_copy], sensors=[check_alerts_sensor(settings)])
    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.setenv("RAGLINE_TEST_BREAK", "1")
    assert not dg.materialize([handbook_copy], instance=instance, raise_on_error=False).success
    alert_tick(defs, instance, settings)
    with psycopg.connect(db_url) as conn:
        [row] = alerts.open_problems(conn)  # the run's, naming the check; none for the check alone
    assert row["key"] == "run:__ephemeral_asset_job__:-"
    assert row["title"].endswith("check handbook_is_complete of handbook_copy failed")
    # Once the run has left the window its problem stays open, and the check still waits on it.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=RUN_WINDOW_HOURS + 1)
    with monkeypatch.context() as patch:
        patch.setattr(health, "_now", lambda: later)
        alert_tick(defs, instance, settings)
    with psycopg.connect(db_url) as conn:
        assert [r["key"] for r in alerts.open_problems(conn)] == [row["key"]]
    monkeypatch.setenv("RAGLINE_TEST_BREAK", "0")
    assert dg.materialize([handbook_copy], instance=instance).success
    alert_tick(defs, instance, settings)
    with psycopg.connect(db_url) as conn:
        assert alerts.open_problems(conn) == []


def test_an_unchanged_corpus_stays_fresh_and_an_uncaught_change_is_late(db_url, tmp_path):
    """Freshness by upstream data: the daily scan finds nothing new, so chunks and what follows keep a
    days-old materialization and stay fresh; a change of raw_documents not caught up within the
    windows makes chunks late, and what rests on it. Materializations are real, then aged."""
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    for job in ("source_pipeline", "source_scan"):  # the build, then a daily scan that changed nothing
        run = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key="handbook")
        assert run.success
    index = defs.resolve_job_def("index_pipeline")
    assert index.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("search_index")]).success
    raw = dg.AssetKey("raw_documents")
    [scan, build] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw, asset_partitions=["handbook"]), limit=2
    ).records
    version = scan.asset_materialization.tags[DATA_VERSION_TAG]
    assert build.asset_materialization.tags[DATA_VERSION_TAG] == version
    # "Up to date" is exact: Dagster records the input data version it consumed (for a partition
    # dep, a hash of the upstream partitions' versions), which the freshness rule compares.
    [built] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("chunks"), asset_partitions=["handbook"]), limit=1
    ).records
    consumed = built.asset_materialization.tags["dagster/input_data_version/raw_documents"]
    assert consumed == hashlib.sha256(version.encode()).hexdigest()
    t0 = dt.datetime.now(dt.UTC)

    def scanned(hours: float, data_version: str) -> None:
        """raw_documents[handbook] materialized `hours` after the build, with this data version."""
        entry, event = scan.event_log_entry, scan.event_log_entry.dagster_event
        mat = event.event_specific_data.materialization
        mat = mat._replace(tags={**mat.tags, DATA_VERSION_TAG: data_version})
        event = event._replace(event_specific_data=event.event_specific_data._replace(materialization=mat))
        at = t0 + dt.timedelta(hours=hours)
        instance.store_event(entry._replace(timestamp=at.timestamp(), dagster_event=event))

    def judge(hours: float, asset: str, partition: str | None = "handbook"):
        at = t0 + dt.timedelta(hours=hours)
        return evaluate_freshness(instance, graph, dg.AssetKey(asset), partition, settings.freshness, at)

    # Scanned daily, nothing changed: 40 h after the build everything downstream is up to date.
    scanned(39, version)
    for asset in ("chunks", "embeddings", "serving_chunks", "search_index"):
        e = judge(40, asset, None if asset == "search_index" else "handbook")
        assert e.passed, e.description
        assert e.metadata["age_hours"].value > settings.freshness.warn_hours  # the old rule: late
        assert e.metadata["freshness_case"].value == "up to date with its upstream data"
        assert e.description.endswith(
            "is up to date with its upstream data; sources scanned 1 h ago at the oldest"
        )
    # The board and `ragline status` say the same.
    row = _asset_row(
        instance,
        dg.AssetKey("chunks"),
        "handbook",
        {},
        FreshnessJudge(instance, graph, settings.freshness, t0 + dt.timedelta(hours=40)),
        t0,
    )
    assert row["freshness"] == "pass" and "up to date" in row["freshness_note"]

    # The documents changed at +45 h (and were scanned again at +74 h); chunks never caught up.
    scanned(45, "changed")
    scanned(74, "changed")
    assert judge(75, "raw_documents").passed
    chunks = judge(75, "chunks")
    assert not chunks.passed and chunks.severity == dg.AssetCheckSeverity.WARN
    assert (
        chunks.description
        == "chunks[handbook] has not caught up with a change of raw_documents 30 h ago, past the 26 h window"
    )
    assert chunks.metadata["upstream_change_hours"].value == 30
    embeddings = judge(75, "embeddings")
    assert not embeddings.passed and embeddings.metadata["late_upstream"].value == "chunks[handbook]"
    assert not judge(75, "search_index", None).passed  # it rests on serving_chunks[handbook]
    assert judge(96, "chunks").severity == dg.AssetCheckSeverity.ERROR  # 51 h behind: past fail_hours
    assert judge(46, "chunks").passed  # 1 h behind: catching up, within the window


DEAD_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from orchestration.resources import RaglineResource

    @dg.op
    def slow(context, ragline: RaglineResource):
        Path(sys.argv[1]).write_text(context.run_id)
        time.sleep(600)

    @dg.job
    def slow_job():
        slow()

    with dg.DagsterInstance.get() as instance:
        slow_job.execute_in_process(
            instance=instance, resources={"ragline": RaglineResource(config_path=sys.argv[2])}
        )
    """
)


def test_a_run_whose_process_was_killed_is_marked_failed(db_url, tmp_path, monkeypatch):
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    started = tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, "-c", DEAD_RUN, str(started), str(settings.path)], cwd=REPO, env=dict(os.environ)
    )
    try:
        for _ in range(1200):
            if started.exists() or worker.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), "the run did not start"
        run_id = started.read_text()
        with dg.DagsterInstance.get() as instance:
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.STARTED and run.tags[PID_TAG] == str(worker.pid)
            assert HOST_TAG in run.tags
            assert fail_dead_runs(instance) == []  # alive: left alone
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            assert fail_dead_runs(instance) == [run_id]
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            [failure] = [
                r.event_log_entry
                for r in instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=5).records
            ]
            assert (
                f"pid {worker.pid}" in failure.dagster_event.message
                and "dead_runs" in failure.dagster_event.message
            )
            assert fail_dead_runs(instance) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"slack": {"url_env": "https://hooks.slack.com/services/T/B/X"}},
            "must name an environment variable",
        ),
        (
            {
                "smtp": {
                    "host": "mail.example.org",
                    "security": "none",
                    "sender": "a@example.org",
                    "recipients": ["b@example.org"],
                    "username": "a",
                    "password_env": "SMTP_PASSWORD",
                }
            },
            "in clear text to mail.example.org",
        ),
        (
            {"smtp": {"host": "mail.example.org", "sender": "a@example.org"}},
            "recipients must be a non-empty list",
        ),
        ({"reminder_hours": 0}, "reminder_hours and timeout_seconds must be greater than 0"),
        (
            {"smtp": {"host": "h", "sender": "a@h", "recipients": ["b@h"], "password_env": "pw s3cret"}},
            "alerts.smtp.password_env must name an environment variable",
        ),
        ({"webhook": {"url_env": "s3cret-password"}}, "got a 15-character string"),
        # A secret that YAML reads as a number is refused by its type, also without echoing it.
        (
            {"smtp": {"host": "h", "sender": "a@h", "recipients": ["b@h"], "password_env": 735512}},
            "alerts.smtp.password_env must be text or null, got int",
        ),
        ({"ui_url": "http://admin:s3cret@localhost:3000"}, "alerts.ui_url must not carry credentials"),
        ({"smtp": "mail.example.org"}, "alerts.smtp must be a mapping"),
        (
            {"smtp": {"host": "h", "sender": "a@h", "recipients": ["b@h"], "port": True}},
            "alerts.smtp.port must be a whole number",
        ),
        ({"pager": {}}, "alerts: unknown keys ['pager']"),
    ],
)
def test_alert_settings_are_validated(tmp_path, block, message):
    config = (REPO / "ragline.yaml").read_text(encoding="utf-8").replace("data_dir: .ragline", "data_dir: .r")
    path = tmp_path / "ragline.yaml"
    import yaml

    raw = yaml.safe_load(config)
    raw["alerts"] = block
    for source in raw["sources"]:
        source["root"] = str(REPO / source["root"])
    raw["eval_sets"] = []
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as refused:
        load_settings(path)
    # A secret pasted where an environment variable's name belongs is never echoed.
    shown = str(refused.value)
    assert "s3cret" not in shown and "hooks.slack.com" not in shown and "735512" not in shown


@dg.asset
def shelf() -> None:
    pass


@dg.asset(deps=[shelf])
def shelf_index() -> None:
    if os.environ.get("RAGLINE_TEST_BREAK") == "1":
        raise RuntimeError("index server unreachable")


def test_a_failure_repaired_by_a_run_of_other_assets_resolves(db_url, tmp_path, monkeypatch):
    """An automation retry selects only what failed, so its key is another one: the failed run's
    problem is over once what it left unbuilt has materialized, inside or outside the run window."""
    settings = alert_project(tmp_path, 1, slack=None, webhook=None, smtp=None)
    both = dg.define_asset_job("shelf_both", selection=[shelf, shelf_index])
    retry = dg.define_asset_job("shelf_retry", selection=[shelf_index])
    defs = dg.Definitions(
        assets=[shelf, shelf_index], jobs=[both, retry], sensors=[check_alerts_sensor(settings)]
    )
    instance = dg.DagsterInstance.ephemeral()

    def run(job: str, broken: bool) -> None:
        monkeypatch.setenv("RAGLINE_TEST_BREAK", "1" if broken else "0")
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        assert result.success is not broken

    def open_keys():
        with psycopg.connect(db_url) as conn:
            return {r["key"] for r in alerts.open_problems(conn)}

    run("shelf_both", broken=True)
    alert_tick(defs, instance, settings)
    assert open_keys() == {"run:shelf_both:-"}
    run("shelf_retry", broken=False)
    alert_tick(defs, instance, settings)
    assert open_keys() == set()

    # The same once the failed run has left the window (its key no longer in the latest runs).
    run("shelf_both", broken=True)
    alert_tick(defs, instance, settings)
    assert open_keys() == {"run:shelf_both:-"}
    run("shelf_retry", broken=False)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=RUN_WINDOW_HOURS + 1)
    monkeypatch.setattr(health, "_now", lambda: later)
    alert_tick(defs, instance, settings)
    assert open_keys() == set()
