"""Where a run's steps execute: in the run's process (default), in a process per step on this
machine, on Celery workers, or in a Kubernetes job per step; chosen with $RAGLINE_EXECUTOR."""

from __future__ import annotations

import contextlib
import os

import dagster as dg

from ragline.config import ConfigError
from ragline.index.local_model import available_cores
from ragline.safe_text import printable

EXECUTOR_ENV = "RAGLINE_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
CELERY_BROKER_ENV = "RAGLINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "RAGLINE_CELERY_BACKEND"
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"
CELERY_QUEUE = "dagster"  # the queue dagster-celery's tasks are routed to
# The concurrency pool of the steps that run the embedding model. Its limit is dagster.yaml's
# `concurrency: pools: default_limit` (or `dagster instance concurrency set ragline_model N`); each
# model step runs the model on cores / limit threads, so steps in the pool never oversubscribe.
MODEL_POOL = "ragline_model"


def executor_name(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    name = (env.get(EXECUTOR_ENV) or "in_process").strip().lower().replace("-", "_")
    if name not in EXECUTORS:
        raise ConfigError(
            f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, got {printable(name, limit=40)!r}"
        )
    return name


def build_executor(name: str) -> dg.ExecutorDefinition:
    """The executor for `name` (see EXECUTORS)."""
    if name == "in_process":
        # Steps share one process: a subprocess per step re-imports Dagster and great-expectations
        # and reloads the model (about 10 s a step on 2 cores), while the model already uses both.
        return dg.in_process_executor
    if name == "multiprocess":
        # A run's steps are a chain per source, so more processes than cores only contend.
        return dg.multiprocess_executor.configured({"max_concurrent": usable_cores()}, name="multiprocess")
    if name == "celery":
        from dagster_celery import celery_executor

        # Read from the environment when set: a broker URL may carry a password, and configured
        # values are stored with the job's snapshot. Results go to the broker unless told otherwise.
        broker = {"env": CELERY_BROKER_ENV} if os.environ.get(CELERY_BROKER_ENV) else DEFAULT_CELERY_BROKER
        backend = {"env": CELERY_BACKEND_ENV} if os.environ.get(CELERY_BACKEND_ENV) else broker
        return celery_executor.configured({"broker": broker, "backend": backend}, name="celery")
    # Documented in the README's Scale-out section, not tested here: needs dagster-k8s and a cluster.
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


def celery_urls() -> tuple[str, str]:
    """The Celery broker and result backend, as build_executor configures them."""
    broker = os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER
    return broker, os.environ.get(CELERY_BACKEND_ENV) or broker


def steps_share_run_process(name: str) -> bool:
    return name == "in_process"


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by a cgroup CPU quota."""
    return available_cores()


def model_threads(instance: dg.DagsterInstance | None) -> int | None:
    """Threads for the model in one step: the usable cores shared by as many model steps as the
    model pool admits at once. None when the instance sets no pool limit (the model's default)."""
    if instance is None:
        return None
    limit = instance.get_concurrency_config().pool_config.default_pool_limit
    # A limit set for the pool itself (`dagster instance concurrency set ragline_model N`) wins;
    # a storage without pools raises NotImplementedError.
    with contextlib.suppress(NotImplementedError):
        limit = instance.event_log_storage.get_concurrency_info(MODEL_POOL).limit or limit
    if not limit:
        return None
    return max(1, usable_cores() // limit)
