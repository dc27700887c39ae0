"""Scale-out: the explicit database mode, workers that never start a database of their own, and the
demo materialized by two Celery workers (Redis on loopback) with the same rows as in-process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from orchestration.resources import RaglineResource
from ragline.storage.db import database_url
from ragline.types import DatabaseError
from tests import celery_cluster
from tests.conftest import REPO, TEST_DATA_DIR, write_project


def test_shared_mode_without_a_database_url_fails_fast_naming_the_fix(tmp_path):
    write_project(tmp_path, [{"name": "docs", "root": "docs"}])
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RAGLINE_DATABASE"] = "shared"
    done = subprocess.run(
        [sys.executable, "-m", "ragline.cli", "materialize"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "RAGLINE_DATABASE=shared but DATABASE_URL is not set" in done.stderr
    assert not (tmp_path / ".ragline" / "pgdata").exists()  # no server was started


def test_a_worker_never_starts_an_embedded_server_of_its_own(tmp_path, monkeypatch):
    settings = write_project(tmp_path, [{"name": "docs", "root": "docs"}])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    worker = RaglineResource(config_path=str(settings.path), start_embedded=False)
    with pytest.raises(DatabaseError, match="never starts an empty one of its own. Set DATABASE_URL"):
        worker.database()
    assert not (tmp_path / ".ragline" / "pgdata").exists()


def test_embedded_mode_ignores_a_database_url(server_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example/other")
    monkeypatch.setenv("RAGLINE_DATABASE", "embedded")
    assert database_url(TEST_DATA_DIR, start=False) == server_url  # the running test server


# Two of the demo's sources, the smallest (75 chunks): two runs at once, one step per worker.
CELERY_SOURCES = ["support", "policies"]


def test_two_celery_workers_materialize_the_demo_with_the_rows_of_an_in_process_run(demo, db_url, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with celery_cluster.redis_server(tmp_path / "redis") as broker:
        env = celery_cluster.cluster_env(
            broker, home, {"RAGLINE_CONFIG": str(REPO / "ragline.yaml"), "DATABASE_URL": db_url}
        )
        with celery_cluster.celery_workers(2, env, tmp_path / "logs") as workers:
            done = celery_cluster.launch(CELERY_SOURCES, env, parallel=2)
    assert done.returncode == 0, done.stdout + done.stderr
    ran_in = celery_cluster.step_pids(home)
    assert set(ran_in) == {"raw_documents", "chunks", "embeddings", "serving_chunks"}
    pids = set().union(*ran_in.values())
    assert pids == set(workers)  # every step ran in a worker, and both workers ran steps

    rows, vectors = celery_cluster.result_rows(db_url, CELERY_SOURCES)
    expected_rows, expected_vectors = celery_cluster.result_rows(demo["url"], CELERY_SOURCES)
    assert rows == expected_rows
    assert len(rows["generations"]) == len(CELERY_SOURCES) and len(vectors) == len(expected_vectors) > 0
    assert vectors.keys() == expected_vectors.keys()
    worst = max(float(np.abs(vectors[k] - expected_vectors[k]).max()) for k in vectors)
    assert worst < 1e-5


def test_steps_under_the_multiprocess_executor_never_start_a_database(tmp_path, monkeypatch):
    # A step in a process of its own, no DATABASE_URL, no server running for this project: it
    # refuses instead of starting an empty embedded database that only it would see.
    settings = write_project(tmp_path, [{"name": "docs", "root": "docs"}])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "alerts.md").write_text("# Alerts\n\nPage the on-call engineer.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RAGLINE_"))}
    env.pop("DATABASE_URL", None)
    env |= {
        "RAGLINE_EXECUTOR": "multiprocess",
        "RAGLINE_CONFIG": str(settings.path),
        "DAGSTER_HOME": str(tmp_path),
    }
    launch = [sys.executable, "-m", "orchestration.launch", "docs"]
    refused = subprocess.run(launch, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1
    assert "never starts an empty one of its own" in refused.stderr
    assert not (tmp_path / ".ragline" / "pgdata").exists()
