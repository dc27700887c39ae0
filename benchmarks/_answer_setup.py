"""What the answer benchmarks set up alike: the demo corpus materialized once into a scratch database,
SmolLM2-135M's ChatClient on a loopback llama.cpp server, and the demo retriever."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg

from orchestration.commands import run_pipeline
from ragline.config import Settings, load_settings
from ragline.index.embedding import build_embedder
from ragline.llm import ChatClient
from ragline.retrieval.context import tokenizer_for
from ragline.retrieval.search import Retriever, build_retriever
from ragline.storage.db import Database, migrate
from tests.llm_server import MODEL_NAME

REPO = Path(__file__).resolve().parent.parent


def demo_settings(url: str) -> Settings:
    """The repo's ragline.yaml, its sources materialized into the database at url unless already published."""
    migrate(url)
    settings = load_settings(REPO / "ragline.yaml")
    with psycopg.connect(url) as conn:
        published = conn.execute("SELECT count(*) FROM ragline.published_generations").fetchone()[0]
    if published < len(settings.sources):
        run_pipeline(
            settings, [s.name for s in settings.sources], dg.DagsterInstance.ephemeral(), quality=False
        )
    return settings


def smol_client(llm_url: str) -> ChatClient:
    """A ChatClient for SmolLM2-135M served by tests/llm_server.py at llm_url (2048-token window)."""
    return ChatClient(
        base_url=llm_url,
        model=MODEL_NAME,
        api_key=None,
        context_window=2048,
        tokenizer=tokenizer_for("cl100k_base"),
    )


def demo_retriever(settings: Settings, db: Database) -> Retriever:
    """The configured retriever with the local embedder, logging no queries."""
    return build_retriever(settings, db, build_embedder(settings.embedding, None), log_queries=False)
