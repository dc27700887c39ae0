"""Chunking in the model's own tokens: bounds, strategies, deterministic ids."""

from __future__ import annotations

import base64
import sys
import threading

import pytest

from ragline.config import ChunkingSettings
from ragline.index import local_model
from ragline.index.local_model import WordPieceTokenizer, model_dir
from ragline.ingest.chunking import Chunker, chunk_id
from tests.conftest import EXAMPLES, REPO, local_embedder

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


class EncodeOnly:
    """The same tokenizer without its remembered word counts: every count tokenizes the text."""

    def __init__(self, tokenizer) -> None:
        self.name = tokenizer.name
        self.encode = tokenizer.encode
        self.prefix_end = tokenizer.prefix_end


TRICKY = [
    "",
    "   ",
    "Café naïve façade – ÉCOLE déjà vu",  # accents are stripped, case folded
    "e\u0301 combining \u0301accent after a space",
    "tabs\tand\nnew\r\nlines  double  spaces ",
    "controls\x0bjoin\x1fwords\x00and\ufffdvanish",  # removed by the normalizer, joining neighbours
    "non\u00a0breaking\u2003space and 漢字かな mixed",
    "[CLS] [SEP] [MASK]x special tokens in text",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3 + " a word past 100 characters",
    "punctuation,without;spaces.and?marks!(nested)[brackets]{braces}",
    "words of no tokens: \x00 \u200b \x0b\x0c and after them",
]


def test_word_counts_equal_a_full_tokenization(tokenizer, monkeypatch):
    fresh = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), tokenizer.name)
    for text in [*TRICKY, TEXT, " ".join(TRICKY)]:
        assert fresh.count(text) == len(tokenizer.encode(text)), repr(text[:60])
        assert fresh.count(text) == len(tokenizer.encode(text))  # remembered the second time
    # A full memo is emptied and filled again with the text's words.
    monkeypatch.setattr(local_model, "WORD_COUNT_MEMO", 50)
    small = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), tokenizer.name)
    assert small.count(" ".join(TRICKY)) == len(tokenizer.encode(" ".join(TRICKY)))
    assert small.count(TEXT) == len(tokenizer.encode(TEXT))
    assert len(small._word_counts) <= len(set(TEXT.split(" "))) + 1


def test_word_counts_equal_a_full_tokenization_on_real_text(tokenizer):
    """The installed packages' descriptions (Markdown, code, tables, URLs): each whole text and
    each paragraph counts as many word pieces as its full tokenization."""
    import importlib.metadata as md

    fresh = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), tokenizer.name)
    texts = sorted({d.metadata.get_payload() or "" for d in md.distributions()})[-40:]
    pieces = [p for t in texts for p in [t, *t.split("\n\n")]]
    assert len(pieces) > 200
    assert [fresh.count(p) for p in pieces] == [len(tokenizer.encode(p)) for p in pieces]


def test_counted_chunks_equal_chunks_of_a_tokenizer_without_counts(tokenizer):
    for strategy in ("sentence", "token", "markdown"):
        settings = ChunkingSettings(strategy=strategy, chunk_size=96, chunk_overlap=10, min_tokens=8)
        text = TEXT + "\n\n" + "\n\n".join(TRICKY)
        expected = Chunker(settings, EncodeOnly(tokenizer)).split(text)
        assert Chunker(settings, tokenizer).split(text) == expected


def test_word_counts_are_right_while_threads_empty_a_small_memo(tokenizer, monkeypatch):
    """Four threads count texts against a memo of 200 words, emptied over and over:
    each count still equals a full tokenization (a memo emptied mid-count raised KeyError)."""
    monkeypatch.setattr(local_model, "WORD_COUNT_MEMO", 200)
    shared = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), tokenizer.name)
    words = TEXT.split()
    # Mostly remembered words and a few new ones: a count fills in its new words only, while another
    # thread empties the memo.
    texts = [" ".join(words[:40] + [f"new{i}x{j}" for j in range(10)]) for i in range(400)]
    expected = [len(tokenizer.encode(t)) for t in texts]
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(len(texts)):
                n = (i + offset * 100) % len(texts)
                assert shared.count(texts[n]) == expected[n]
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns within a count, as on a loaded machine
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_long_space_free_words_are_counted_but_not_remembered(tokenizer):
    """Base64 paragraphs are counted right, and the memo keeps none of their long "words"."""
    fresh = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), tokenizer.name)
    blob = base64.b64encode(bytes(range(256)) * 40).decode()
    text = f"an attachment: {blob} and {blob[:65]} end"
    assert fresh.count(text) == len(tokenizer.encode(text))
    assert fresh.count(text) == len(tokenizer.encode(text))
    assert max(map(len, fresh._word_counts)) <= local_model.MEMO_WORD_CHARS
    assert "attachment:" in fresh._word_counts


_CHUNK_ALL_EXAMPLES = """
import json, sys
if sys.argv[1] == "scipy-first":
    import scipy.stats  # nltk then loads with its scipy extras, as it would without ragline's guard
from ragline.config import ChunkingSettings
from ragline.index.local_model import WordPieceTokenizer, model_dir
from ragline.ingest.chunking import Chunker
from tests.conftest import EXAMPLES
tokenizer = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), "wordpiece")
chunker = Chunker(ChunkingSettings(strategy="sentence", chunk_size=64, chunk_overlap=8), tokenizer)
out = [[c.text for c in chunker.split(p.read_text())] for p in sorted(EXAMPLES.rglob("*.md"))]
state = {"scipy": "scipy" in sys.modules, "nltk": "nltk" in sys.modules, "chunks": out}
import scipy.stats  # the guard is gone: scipy still imports afterwards
print(json.dumps(state))
"""


def test_sentence_splitting_loads_nltk_without_scipy_and_chunks_the_same():
    """The build process saves ~45 MB of resident memory by loading nltk without the scipy
    statistics it never calls; the sentence chunks are the same as with scipy loaded."""
    import json
    import subprocess

    def chunks(mode: str) -> dict:
        cmd = [sys.executable, "-c", _CHUNK_ALL_EXAMPLES, mode]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, cwd=REPO)
        return json.loads(done.stdout)

    lean, full = chunks("lean"), chunks("scipy-first")
    assert (lean["nltk"], lean["scipy"]) == (True, False)
    assert (full["nltk"], full["scipy"]) == (True, True)
    assert sum(len(c) for c in lean["chunks"]) > 50
    assert lean["chunks"] == full["chunks"]
