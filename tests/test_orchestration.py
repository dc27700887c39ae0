"""Definitions, the asset-graph snapshot, the sensor and declarative automation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from ragline.config import load_settings
from tests.conftest import REPO, run

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
        # The key list grows every day; the definition is what the snapshot pins.
        return f"{partitions_def.cron_schedule} from {partitions_def.start.date()}"
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
        "freshness_checks",
        "dead_runs",
        "check_alerts",
        "run_failure_alerts",
        "run_success_resolves",
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
    assert idle.run_requests == [] and idle.skip_message == "no source folder changed"

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


def test_automation_follows_upstream_past_passing_checks(project):
    settings = project(
        {"handbook": ["handbook/benefits.md"], "policies": ["policies/vendor-management-policy.txt"]}
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    # Everything built once: nothing more to do.
    from orchestration.commands import run_pipeline

    run_pipeline(settings, ["handbook", "policies"], instance)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0

    # raw_documents for one source updates: only that source's chunks are requested.
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=instance, partition_key="policies", asset_selection=[dg.AssetKey("raw_documents")]
    )
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    # The chain below it is requested in the same tick, for that partition only.
    assert second.get_requested_partitions(dg.AssetKey("chunks")) == {"policies"}
    assert second.get_requested_partitions(dg.AssetKey("embeddings")) == {"policies"}
    assert second.get_num_requested(dg.AssetKey("raw_documents")) == 0


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
