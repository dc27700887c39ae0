"""Resources: the ragline project (settings + Postgres) and the embedder, bound in definitions.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import PrivateAttr

from orchestration.executors import model_threads
from orchestration.run_process import process_tags
from ragline.config import EmbeddingSettings, Settings, load_settings
from ragline.index.embedding import build_embedder
from ragline.storage.db import RUN_LOCK, Database, database_url, locked
from ragline.types import Embedder

PARTITION_TAG = "dagster/partition"  # set on every run of a single partition (dagster.yaml limits it too)

# One pool and one loaded model per process, shared by every step that runs in it.
_lock = threading.Lock()
_databases: dict[str, Database] = {}
_embedders: dict[tuple, Embedder] = {}


def close_databases() -> None:
    """Close every pool this process opened (tests, and long-lived processes that switch servers)."""
    with _lock:
        for db in _databases.values():
            db.close()
        _databases.clear()


class RaglineResource(dg.ConfigurableResource):
    """The ragline.yaml of this project and the Postgres it names ($DATABASE_URL or embedded)."""

    config_path: str
    # False where steps run in processes of their own (multiprocess, celery, k8s executors): such a
    # process attaches to the embedded server that runs on its host and never starts one (it would
    # be an empty database that only this step sees); without one it fails, naming DATABASE_URL.
    start_embedded: bool = True

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[RaglineResource]:
        """A run holds the lock of its partition (or, unpartitioned, of its job) from start to end:
        two runs of one source take turns whoever launched them. dagster.yaml's per-partition limit
        queues the daemon's runs; this also covers `ragline materialize` and other in-process runs.

        Resources are set up once per process: where each step runs in a process of its own, each
        step holds the lock for itself, so two runs of a partition take turns step by step, not run
        by run. Runs launched through the queue still run one per partition (dagster.yaml)."""
        run = context.run
        if run is None:
            yield self
            return
        if self.start_embedded:
            # Steps run in this process (the run's): if it dies, the dead_runs sensor fails the run.
            context.instance.add_run_tags(run.run_id, process_tags())
        subject = run.tags.get(PARTITION_TAG) or run.job_name
        url = self.url()
        # Polls rather than blocks: a blocked waiter's snapshot would stall (or, for a run that
        # builds an index CONCURRENTLY, deadlock) the run it waits for.
        with locked(url, RUN_LOCK, subject, poll_seconds=0.5, label=f"run {run.run_id[:8]} of {subject}"):
            yield self

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def url(self) -> str:
        return database_url(self.settings().data_dir, start=self.start_embedded)

    def database(self) -> Database:
        url = self.url()
        with _lock:
            if url not in _databases:
                _databases[url] = Database(url)
            return _databases[url]


# The resource's fields that mirror EmbeddingSettings one to one (api_key is the resource's own,
# api_key_env the settings' own).
_SHARED_FIELDS = (
    "provider",
    "model",
    "batch_size",
    "model_batch_size",
    "base_url",
    "dimensions",
    "revision",
    "max_retries",
    "timeout_seconds",
    "max_in_flight",
    "max_tokens_per_input",
    "max_tokens_per_request",
)


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model: local all-MiniLM-L6-v2 on ONNX Runtime, or an OpenAI-compatible API."""

    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    model_batch_size: int = 128
    base_url: str | None = None
    api_key: str | None = None
    dimensions: int | None = None
    revision: str | None = None
    max_retries: int = 5
    timeout_seconds: float = 60.0
    max_in_flight: int = 4
    max_tokens_per_input: int | None = None
    max_tokens_per_request: int | None = None
    _threads: int | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # The model pool's limit (dagster.yaml) shares this machine's cores among the model steps.
        self._threads = model_threads(context.instance)

    def embedder(self) -> Embedder:
        settings = EmbeddingSettings(**{name: getattr(self, name) for name in _SHARED_FIELDS})
        key = (settings, self.api_key, self._threads)
        with _lock:
            if key not in _embedders:
                _embedders[key] = build_embedder(settings, self.api_key, threads=self._threads)
            return _embedders[key]

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings, env: dict[str, str]) -> EmbedderResource:
        api_key = None
        # Only the variable configured for this endpoint (OPENAI_API_KEY for OpenAI's own API only):
        # a custom base_url gets no key unless ragline.yaml names one with api_key_env.
        variable = settings.key_variable if settings.provider == "openai" else None
        if variable and (settings.base_url is None or variable in env):
            # Secrets stay out of run config: Dagster reads the variable when the run starts.
            api_key = dg.EnvVar(variable)
        return cls(api_key=api_key, **{name: getattr(settings, name) for name in _SHARED_FIELDS})
