"""The ledger streams pending texts in committed batches: progress is reported, and a failure
keeps every batch committed before it, so a rerun embeds only the rest."""

from __future__ import annotations

import io

import psycopg
import pytest

from ragline.config import ChunkingSettings, SourceSettings
from ragline.index import embedding_ledger
from ragline.index.progress import Progress
from ragline.ingest.chunk_store import rechunk_source
from ragline.ingest.chunking import Chunker
from ragline.ingest.documents import store_scan
from ragline.ingest.sources import scan_source
from ragline.storage.db import Database
from ragline.types import EmbeddingError
from tests.conftest import EXAMPLES, local_embedder


class FailsAfter:
    """The real local model, made to fail on its n-th call (a crashed worker, a dropped link)."""

    def __init__(self, model, calls_before_failure: int) -> None:
        self._model = model
        self.model_id, self.max_tokens, self.tokenizer, self.dim = (
            model.model_id,
            model.max_tokens,
            model.tokenizer,
            model.dim,
        )
        self.remaining = calls_before_failure

    def embed(self, texts):
        if self.remaining == 0:
            raise EmbeddingError("connection reset by peer")
        self.remaining -= 1
        return self._model.embed(texts)


@pytest.fixture
def chunked(db_url):
    source = SourceSettings(name="handbook", root=EXAMPLES / "handbook")
    model = local_embedder()
    with Database(db_url) as db, db.connection() as conn:
        store_scan(conn, source.name, scan_source(source))
        stats = rechunk_source(conn, source.name, Chunker(ChunkingSettings(chunk_size=120), model.tokenizer))
    return source, stats.current_chunks


def test_batches_are_committed_as_they_go_and_a_rerun_resumes(db_url, chunked, monkeypatch):
    source, chunks = chunked
    monkeypatch.setattr(embedding_ledger, "COMMIT_EVERY", 20)
    model = local_embedder()
    with Database(db_url) as db, db.connection() as conn:
        distinct = conn.execute("SELECT count(DISTINCT text_hash) FROM ragline.chunks").fetchone()[0]
        assert distinct > 60

        with pytest.raises(EmbeddingError, match="connection reset"):
            embedding_ledger.embed_pending(conn, source.name, FailsAfter(model, 3))
        stored = conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0]
        assert stored == 60  # three committed batches survive the failure
        # The claims of the failed batch and of the one the pipeline had queued are released.
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        assert conn.execute(held).fetchone()[0] == 0

        messages: list[str] = []
        calls = model.calls
        stats = embedding_ledger.embed_pending(conn, source.name, model, progress=messages.append)
    assert stats.texts_embedded == distinct - 60 == model.calls - calls
    assert stats.chunks_reused > 0 and stats.chunks == chunks
    assert messages[0] == f"embedding {distinct - 60} new texts for handbook with {model.model_id}"
    batches = -(-(distinct - 60) // 20)
    assert len(messages) == 1 + batches
    assert messages[-1].startswith(f"handbook: {distinct - 60}/{distinct - 60} texts embedded")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0] == distinct


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_a_bar_with_an_eta_on_a_terminal_and_lines_for_the_run_log(
    db_url, chunked, monkeypatch
):
    source, _chunks = chunked
    monkeypatch.setattr(embedding_ledger, "COMMIT_EVERY", 40)
    terminal, lines = Terminal(), []
    with Database(db_url) as db, db.connection() as conn:
        stats = embedding_ledger.embed_pending(
            conn, source.name, local_embedder(), progress=lines.append, terminal=terminal
        )
    n = stats.texts_embedded
    draws = terminal.getvalue().split("\r")[1:]
    assert len(draws) == len(lines) - 1 == -(-n // 40) > 1
    assert "ETA" in draws[0] and f"{n}/{n} texts embedded" in draws[-1] and draws[-1].endswith("done   \n")
    assert "ETA" in lines[1] and lines[-1].endswith(", done)")
    # Not a terminal (a log file, Dagster's captured stderr): no bar.
    log_file = io.StringIO()
    Progress("x", 2, "texts", lambda _m: None, log_file).update(1)
    assert log_file.getvalue() == ""


def test_the_eta_extrapolates_tokens_not_texts():
    now = [0.0]
    bar = Progress("s", 100, "texts", lambda _m: None, total_work=10_000, clock=lambda: now[0])
    now[0] = 10.0
    # Half the texts but a tenth of the tokens done (the shortest come first): 90 s to go, not 10.
    bar.update(50, work_done=1_000)
    assert bar.eta() == 90.0
