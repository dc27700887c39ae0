"""Chunking in the model's own tokens: bounds, strategies, deterministic ids."""

from __future__ import annotations

import pytest

from ragline.config import ChunkingSettings
from ragline.ingest.chunking import Chunker, chunk_id
from tests.conftest import EXAMPLES, local_embedder

TEXT = (EXAMPLES / "handbook" / "on-call-and-incident-response.md").read_text()


@pytest.fixture(scope="module")
def tokenizer():
    return local_embedder().tokenizer


@pytest.mark.parametrize("strategy", ["sentence", "token", "markdown"])
def test_chunks_stay_within_bounds_and_cover_the_text(strategy, tokenizer):
    settings = ChunkingSettings(strategy=strategy, chunk_size=96, chunk_overlap=10, min_tokens=8)
    chunks = Chunker(settings, tokenizer).split(TEXT)
    assert len(chunks) > 5
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 1 <= c.token_count <= 96
        assert c.token_count == len(tokenizer.encode(c.text))
        assert c.start_char is not None and TEXT[c.start_char : c.end_char] == c.text
    # Every word of the document lands in some chunk.
    covered = " ".join(c.text for c in chunks)
    assert all(word in covered for word in TEXT.split())


def test_markdown_chunks_follow_headers(tokenizer):
    settings = ChunkingSettings(strategy="markdown", chunk_size=200, chunk_overlap=0, min_tokens=8)
    chunks = Chunker(settings, tokenizer).split(TEXT)
    headed = [c for c in chunks if c.text.startswith("#")]
    assert len(headed) >= len(chunks) // 2
    assert all("header_path" in c.metadata for c in chunks)
    # A lone title line is folded into the section after it, not left as a 3-token chunk.
    assert all(c.token_count >= 8 for c in chunks)


def test_long_unbroken_text_is_cut_at_token_offsets(tokenizer):
    text = "x" * 5000  # one 'word' far over the limit
    chunks = Chunker(ChunkingSettings(strategy="sentence", chunk_size=64, chunk_overlap=0), tokenizer).split(
        text
    )
    assert all(c.token_count <= 64 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_chunk_ids_are_deterministic_and_distinct():
    a = chunk_id("docs", "a.md", 1, "hash1", "markdown:200:20:8|wp", 0)
    assert a == chunk_id("docs", "a.md", 1, "hash1", "markdown:200:20:8|wp", 0)
    assert (
        len(
            {
                a,
                chunk_id("docs", "a.md", 1, "hash1", "markdown:200:20:8|wp", 1),
                chunk_id("other", "a.md", 1, "hash1", "markdown:200:20:8|wp", 0),
                chunk_id("docs", "a.md", 1, "hash2", "markdown:200:20:8|wp", 0),
                # The same text again as a later version (an edit reverted): its own ids.
                chunk_id("docs", "a.md", 3, "hash1", "markdown:200:20:8|wp", 0),
            }
        )
        == 5
    )
