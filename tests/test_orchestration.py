"""Definitions, the asset-graph snapshot, the sensor and declarative automation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from ragline.config import load_settings
from tests.conftest import REPO, run, write_project

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        out[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": _partitions(node.partitions_def),
            "freshness": str(node.freshness_policy) if node.freshness_policy else None,
            "automation_condition": condition.get_label() or type(condition).__name__ if condition else None,
            "automation_condition_children": sorted(
                (c.get_label() or type(c).__name__) for c in condition.children
            )
            if condition
            else None,
            "checks": sorted(
                (ck.name, graph.get(ck).blocking) for ck in graph.get_check_keys_for_assets({key})
            ),
            "table": node.metadata.get("table"),
        }
    return out


def _partitions(partitions_def):
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The key list grows every day, and the first day is the project's (test_partitions.py).
        return f"{partitions_def.cron_schedule}, end offset {partitions_def.end_offset}"
    return partitions_def.get_partition_keys()


def test_definitions_load_and_match_the_graph_snapshot():
    defs = build_definitions(load_settings(REPO / "ragline.yaml"))
    snapshot = json.loads(json.dumps(graph_snapshot(defs)))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text()), "graph changed: rerun with UPDATE_SNAPSHOTS=1"
    names = {s.name for s in defs.sensors} | {s.name for s in defs.schedules}
    assert names == {
        "source_files_changed",
        "ragline_automation",
        "daily_refresh",
        "daily_quality",
        "daily_gc",
        "hourly_llm_costs",
        "freshness_checks",
        "dead_runs",
        "check_alerts",
    }
    for item in [*defs.sensors, *defs.schedules]:
        assert item.default_status.value == "RUNNING", item.name


def test_dagster_definitions_load_through_the_cli(db_url):
    """What `make dev` (dg dev) loads: the code location, with the instance from dagster.yaml."""
    from ragline.cli import dagster_environment

    env = {**os.environ, **dagster_environment(load_settings(REPO / "ragline.yaml"))}
    dg = str(Path(sys.executable).parent / "dg")
    out = subprocess.run(
        [dg, "check", "defs"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr


def test_core_never_imports_dagster():
    code = (
        "import sys, importlib, pkgutil, ragline\n"
        "for m in pkgutil.walk_packages(ragline.__path__, 'ragline.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k == 'dagster' or k.startswith('dagster.'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sensor_requests_only_changed_sources(project):
    settings = project(
        {"handbook": ["handbook/benefits.md"], "policies": ["policies/vendor-management-policy.txt"]}
    )
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("source_files_changed")
    instance = dg.DagsterInstance.ephemeral()

    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert sorted(r.partition_key for r in first.run_requests) == ["handbook", "policies"]
    assert all(r.asset_selection in (None, [dg.AssetKey("raw_documents")]) for r in first.run_requests)

    idle = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
    )
    assert idle.run_requests == [] and idle.skip_message == "no source folder changed since it was ingested"

    (settings.source("policies").root / "new-policy.md").write_text("# Travel\n\nBook economy.\n")
    changed = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
    )
    assert [r.partition_key for r in changed.run_requests] == ["policies"]

    # Back to the earlier state: still a change, with a run key not used before.
    (settings.source("policies").root / "new-policy.md").unlink()
    reverted = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=changed.cursor, definitions=defs)
    )
    assert [r.partition_key for r in reverted.run_requests] == ["policies"]
    keys = [r.run_key for tick in (first, changed, reverted) for r in tick.run_requests]
    assert len(keys) == len(set(keys)) == 4


def requested(result) -> dict[str, set]:
    """What an automation tick requested: asset name -> partitions (None for unpartitioned)."""
    out: dict[str, set] = {}
    for r in result.results:
        if r.true_subset.size:
            subset = r.true_subset
            out[r.key.to_user_string()] = (
                set(subset.expensively_compute_partition_keys()) if subset.is_partitioned else {None}
            )
    return out


def test_nothing_reruns_for_nothing_and_an_edit_reruns_only_what_depends_on_it(project):
    """`make demo` then `make dev`: the sensor's first tick (no cursor) and automation request
    nothing; a daily scan that finds nothing triggers nothing; an edit to one source's file
    requests that source's pipeline, and automation then rebuilds only what depends on it."""
    from orchestration.commands import CODE_LOCATION, run_pipeline
    from orchestration.definitions import INDEX_JOB, QUALITY_JOB, SOURCE_PIPELINE_JOB, SOURCE_SCAN_JOB

    settings = project(
        {"handbook": ["handbook/benefits.md"], "policies": ["policies/vendor-management-policy.txt"]}
    )
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("source_files_changed")
    instance = dg.DagsterInstance.ephemeral()
    results = run_pipeline(settings, ["handbook", "policies"], instance)  # `make demo`
    assert all(r.success for _what, r in results)
    # Its runs are the code location's named jobs: the UI lists them on the job pages (by this tag)
    # and in the timeline (by the origin).
    for job, count in ((SOURCE_PIPELINE_JOB, 2), (INDEX_JOB, 1), (QUALITY_JOB, 1)):
        runs = instance.get_runs(
            dg.RunsFilter(job_name=job, tags={".dagster/repository": "__repository__@ragline"})
        )
        assert len(runs) == count, job
        assert runs[0].remote_job_origin.location_name == CODE_LOCATION
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["dg"]["project"]["code_location_name"] == CODE_LOCATION

    # `make dev`: the sensor starts from what was ingested, not from an empty cursor.
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert first.run_requests == [], first.skip_message
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert tick.total_requested == 0

    # The daily scan of both sources finds nothing new: it records its run, and nothing follows.
    scan = defs.resolve_job_def(SOURCE_SCAN_JOB)
    for source in ("handbook", "policies"):
        assert scan.execute_in_process(instance=instance, partition_key=source).success
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.total_requested == 0, requested(tick)

    # One file of one source edited: the sensor requests that source's pipeline only.
    doc = settings.source("policies").root / "vendor-management-policy.txt"
    doc.write_text(doc.read_text() + "\nVendors are reviewed every year by procurement.\n")
    changed = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
    )
    [request] = changed.run_requests
    assert (request.partition_key, request.asset_selection) == ("policies", [dg.AssetKey("raw_documents")])
    assert sensor.job_name == SOURCE_PIPELINE_JOB
    pipeline = defs.resolve_job_def(SOURCE_PIPELINE_JOB)
    assert pipeline.execute_in_process(
        instance=instance, partition_key="policies", asset_selection=request.asset_selection
    ).success
    # Then automation, a layer per tick as the daemon runs them: the rest of that source's pipeline
    # (never the other source's assets), what depends on the published source, then the day's
    # quality assets.
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert requested(tick) == {
        "chunks": {"policies"},
        "embeddings": {"policies"},
        "serving_chunks": {"policies"},
    }
    pipeline.execute_in_process(
        instance=instance,
        partition_key="policies",
        asset_selection=[dg.AssetKey(a) for a in ("chunks", "embeddings", "serving_chunks")],
    )
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert requested(tick) == {"search_index": {None}, "eval_set": {None}, "variant_corpora": {None}}
    assert defs.resolve_job_def(INDEX_JOB).execute_in_process(instance=instance).success
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    quality = defs.resolve_job_def(QUALITY_JOB)
    today = quality.partitions_def.get_last_partition_key()
    assert requested(tick) == {
        "retrieval_scores": {today},
        "variant_comparison": {today},
        "drift_metrics": {today},
        "answer_scores": {today},
        "annotation_queue": {today},
    }
    assert quality.execute_in_process(instance=instance, partition_key=today).success
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.total_requested == 0, requested(tick)
    idle = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=changed.cursor, definitions=defs)
    )
    assert idle.run_requests == []

    # The daily scan finds an edit the sensor did not see: the chain below it, for that source only.
    doc = settings.source("handbook").root / "benefits.md"
    doc.write_text(doc.read_text() + "\n## Parking\n\nParking is free for staff.\n")
    assert scan.execute_in_process(instance=instance, partition_key="handbook").success
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert requested(tick) == {
        "chunks": {"handbook"},
        "embeddings": {"handbook"},
        "serving_chunks": {"handbook"},
    }


def test_daily_partitions_start_at_the_first_day_materialized(tmp_path, db_url, monkeypatch):
    import datetime as dt

    import psycopg

    from orchestration.partitions import daily_partitions

    settings = write_project(tmp_path, [{"name": "docs", "root": "docs"}])
    today = dt.datetime.now(dt.UTC).date()
    assert daily_partitions(settings).start.date() == today  # migrated today, nothing stored yet
    first = today - dt.timedelta(days=9)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO ragline.documents (source, doc_id, path, version, content_hash, status)"
            " VALUES ('docs', 'a', 'a.md', 1, 'h', 'live')"
        )
        conn.execute(
            "INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text,"
            " char_count, created_at) VALUES ('docs', 'a', 1, 'h', 'x', 1, %s)",
            (dt.datetime.combine(first, dt.time(12), dt.UTC),),
        )
    assert daily_partitions(settings).start.date() == first
    assert daily_partitions(settings).get_partition_keys()[0] == first.isoformat()
    # Installed (migrated) 20 days ago, its oldest version since collected by gc: the start is
    # the install day, and does not move when gc deletes versions.
    installed = today - dt.timedelta(days=20)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE ragline.schema_migrations SET applied_at = %s",
            (dt.datetime.combine(installed, dt.time(12), dt.UTC),),
        )
        assert daily_partitions(settings).start.date() == installed
        conn.execute("DELETE FROM ragline.document_versions")
    assert daily_partitions(settings).start.date() == installed
    # Days are UTC days whatever the server's time zone: 23:30 UTC is the next day at UTC+14.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE ragline.schema_migrations SET applied_at = %s",
            (dt.datetime.combine(installed, dt.time(23, 30), dt.UTC),),
        )
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'Pacific/Kiritimati'")
    assert daily_partitions(settings).start.date() == installed
    # A configured date wins; no reachable database: today.
    pinned = write_project(
        tmp_path, [{"name": "docs", "root": "docs"}], evaluation={"start_date": "2026-10-01"}
    )
    assert daily_partitions(pinned).start.date() == dt.date(2026, 10, 1)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/nowhere?host={tmp_path}")
    assert daily_partitions(settings).start.date() == today


def test_daily_quality_skips_a_day_before_the_first_partition_and_holds_failed_checks_downstream(tmp_path):
    """A first install before 04:00 UTC: the partitions start today, so yesterday's run is skipped.
    Later ticks leave out the assets downstream of a blocking check whose latest result failed at ERROR."""
    import datetime as dt

    today = dt.datetime.now(dt.UTC).replace(hour=4, minute=0, second=0, microsecond=0)
    settings = write_project(
        tmp_path, [{"name": "docs", "root": "docs"}], evaluation={"start_date": today.date().isoformat()}
    )
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("daily_quality")

    with dg.instance_for_test() as instance:

        def tick(at: dt.datetime):
            context = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
            )
            return schedule.evaluate_tick(context)

        first = tick(today)
        assert not first.run_requests and f"start at {today.date()}" in first.skip_message
        [request] = tick(today + dt.timedelta(days=1)).run_requests
        assert request.partition_key == today.date().isoformat()
        # Nothing held: the whole job.
        assert request.asset_selection is None and request.asset_check_keys is None

        # eval_set's blocking check failed at ERROR: what reads the eval set is held, drift is not.
        unique = dg.AssetCheckKey(dg.AssetKey("eval_set"), "eval_questions_are_unique")

        def record(passed: bool, severity=dg.AssetCheckSeverity.ERROR) -> None:
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=unique.asset_key, check_name=unique.name, passed=passed, severity=severity
                )
            )

        record(False)
        [request] = tick(today + dt.timedelta(days=2)).run_requests
        assert request.partition_key == (today + dt.timedelta(days=1)).date().isoformat()
        assert request.asset_selection == [dg.AssetKey("drift_metrics")]
        # Only the job's own checks of drift_metrics (not its freshness check, left to its sensor).
        assert {c.name for c in request.asset_check_keys} == {
            "corpus_has_not_drifted",
            "queries_have_not_drifted",
        }
        assert (
            request.tags["ragline/held"]
            == "annotation_queue,answer_scores,retrieval_scores,variant_comparison"
        )
        # A WARN failure does not hold; a pass after the failure releases everything.
        record(False, dg.AssetCheckSeverity.WARN)
        [request] = tick(today + dt.timedelta(days=2)).run_requests
        assert request.asset_selection is None
        record(False)
        record(True)
        [request] = tick(today + dt.timedelta(days=2)).run_requests
        assert request.asset_selection is None and "ragline/held" not in request.tags
        # search_index failed at ERROR: every quality asset is held; the tick is skipped and says why.
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("search_index"),
                check_name="hnsw_recall_at_10_meets_threshold",
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
            )
        )
        skipped = tick(today + dt.timedelta(days=2))
        assert not skipped.run_requests
        assert skipped.skip_message == (
            "every quality asset held: annotation_queue, answer_scores, drift_metrics, retrieval_scores, "
            "variant_comparison (search_index.hnsw_recall_at_10_meets_threshold failed)"
        )


def test_a_failed_automation_run_is_retried_hourly():
    """embeddings failed (its endpoint was down): FOLLOW_UPSTREAM requests it again after the next
    hourly tick, although its upstream did not change again; once it succeeds, nothing more."""
    import datetime as dt

    from orchestration.automation import FOLLOW_UPSTREAM

    endpoint = {"up": False}

    @dg.asset
    def chunks():
        return dg.MaterializeResult(data_version=dg.DataVersion("a"))

    @dg.asset(deps=[chunks], automation_condition=FOLLOW_UPSTREAM)
    def embeddings():
        if not endpoint["up"]:
            raise RuntimeError("endpoint down")

    defs = dg.Definitions(assets=[chunks, embeddings])
    instance = dg.DagsterInstance.ephemeral()
    start = dt.datetime(2026, 11, 20, 1, 10, tzinfo=dt.UTC)
    cursor = None

    def tick(minutes: int) -> int:
        nonlocal cursor
        at = start + dt.timedelta(minutes=minutes)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=cursor, evaluation_time=at
        )
        cursor = result.cursor
        return result.get_num_requested(dg.AssetKey("embeddings"))

    tick(0)
    dg.materialize([chunks], instance=instance)
    assert tick(1) == 1  # the change
    dg.materialize([chunks, embeddings], instance=instance, selection=["embeddings"], raise_on_error=False)
    assert tick(2) == 0  # failed: not again within the hour
    assert tick(55) == 1  # past 02:00: retried
    endpoint["up"] = True
    dg.materialize([chunks, embeddings], instance=instance, selection=["embeddings"])
    assert tick(56) == 0 and tick(120) == 0  # built: nothing to retry


def test_quality_condition_follows_changed_versions_or_a_cron():
    """The condition of the quality assets on a two-asset graph: a rerun with the same data
    version triggers nothing; a new version triggers today's partition, at once (on_change) or
    on the first change after each cron tick (cron)."""
    import datetime as dt

    from orchestration.automation import quality_condition
    from ragline.config import AutomationSettings

    version = {"value": "a"}

    @dg.asset
    def upstream():
        return dg.MaterializeResult(data_version=dg.DataVersion(version["value"]))

    def tick(defs, instance, cursor, at):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=cursor, evaluation_time=at
        )
        return result, result.get_num_requested(dg.AssetKey("scores"))

    start = dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC)
    for quality in ("on_change", "0 4 * * *"):

        @dg.asset(
            deps=[upstream],
            partitions_def=dg.DailyPartitionsDefinition("2026-11-01", end_offset=1),
            automation_condition=quality_condition(AutomationSettings(quality)),
        )
        def scores(): ...

        defs = dg.Definitions(assets=[upstream, scores])
        instance = dg.DagsterInstance.ephemeral()
        version["value"] = "a"
        dg.materialize([upstream], instance=instance)
        result, n = tick(defs, instance, None, start)
        dg.materialize([upstream], instance=instance)  # the same version: a no-op
        result, n = tick(defs, instance, result.cursor, start + dt.timedelta(minutes=1))
        assert n == 0, quality
        version["value"] = "b"
        dg.materialize([upstream], instance=instance)
        result, n = tick(defs, instance, result.cursor, start + dt.timedelta(minutes=2))
        if quality == "on_change":
            assert n == 1
            continue
        assert n == 0  # this cron period (from yesterday 04:00) was handled before the change
        after = start + dt.timedelta(hours=3, minutes=1)  # past today's 04:00 tick
        result, n = tick(defs, instance, result.cursor, after)
        assert n == 0  # a tick alone is no reason to run
        for minutes, value, runs in ((1, "c", 1), (2, "d", 0)):
            version["value"] = value
            dg.materialize([upstream], instance=instance)
            result, n = tick(defs, instance, result.cursor, after + dt.timedelta(minutes=minutes))
            assert n == runs, value  # the first change after the tick, and only that one


def test_automation_quality_setting_is_validated(tmp_path):
    from ragline.config import ConfigError

    with pytest.raises(ConfigError, match="automation.quality must be on_change or a cron"):
        write_project(tmp_path, [{"name": "docs", "root": "docs"}], automation={"quality": "daily"})


@pytest.mark.parametrize("bad", ["documents_have_text"])
def test_automation_waits_for_failed_blocking_checks(project, bad):
    settings = project({"handbook": ["handbook/benefits.md"]})
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    from orchestration.commands import run_pipeline

    run_pipeline(settings, ["handbook"], instance)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # Every document of the source gone: raw_documents' blocking check fails.
    for f in settings.source("handbook").root.iterdir():
        f.unlink()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key="handbook",
        asset_selection=[dg.AssetKey("raw_documents")],
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations[bad].passed is False
    # The failing check names its partition, the failing rows and what to do.
    meta = {k: v.value for k, v in evaluations[bad].metadata.items()}
    assert meta["partition"] == "handbook" and meta["failing_doc_ids"] == "no live documents"
    assert "folder is not mounted" in meta["what_to_do"]
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(dg.AssetKey("chunks")) == 0


def test_run_helper_smoke(project):
    settings = project({"handbook": ["handbook/benefits.md"]})
    assert all(r.success for r in run(settings).values())
