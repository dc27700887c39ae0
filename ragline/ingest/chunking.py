"""Chunking with llama-index-core splitters, sized in the embedding model's own tokens."""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from llama_index.core import Document as LlamaDocument
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter, TokenTextSplitter

from ragline.config import ChunkingSettings
from ragline.types import ModelTokenizer


@dataclass(frozen=True)
class Chunk:
    chunk_index: int
    text: str
    token_count: int
    start_char: int | None
    end_char: int | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text_hash(self) -> str:
        return text_hash(self.text)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunker_id(settings: ChunkingSettings, tokenizer: ModelTokenizer) -> str:
    """Names the splitter and its settings; chunks made under another id are replaced."""
    return f"{settings.fingerprint()}|{tokenizer.name}"


def chunk_id(source: str, doc_id: str, version: int, content_hash: str, chunker: str, index: int) -> str:
    """Deterministic: the same document version chunked the same way gets the same ids. The version
    is part of the id because a document edited back to an earlier text is a new version, while the
    earlier version's chunks may still be served by a generation kept for rollback."""
    key = "\x1f".join((source, doc_id, str(version), content_hash, chunker, str(index)))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class _RefuseScipy:
    """A meta-path finder that refuses scipy to one thread, for the length of one import."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if (name == "scipy" or name.startswith("scipy.")) and threading.get_ident() == self.thread:
            raise ImportError(f"{name} is not loaded for nltk's sentence splitting")


def import_nltk_without_scipy() -> None:
    """Import nltk, whose Punkt tokenizer llama-index's SentenceSplitter uses, without scipy.

    `import nltk` imports its whole package tree, and four of its modules try scipy for statistics
    ragline never calls (each falls back when the import fails): about 45 MB of resident memory in a
    process that has not loaded scipy otherwise (the core build path; a Dagster run loads it anyway,
    through great-expectations). Sentence splitting does not touch scipy, so chunks are the same. A
    process that already imported nltk or scipy is left as it is; other threads, and anything after
    this import, can import scipy as usual."""
    if "nltk" in sys.modules or "scipy" in sys.modules:
        return
    guard = _RefuseScipy()
    sys.meta_path.insert(0, guard)
    try:
        import nltk  # noqa: F401
    finally:
        sys.meta_path.remove(guard)


class Chunker:
    def __init__(self, settings: ChunkingSettings, tokenizer: ModelTokenizer) -> None:
        import_nltk_without_scipy()
        self.settings = settings
        self.tokenizer = tokenizer
        self.id = chunker_id(settings, tokenizer)
        # The model's own count when it has one (the word-piece tokenizer remembers its words').
        self.count = getattr(tokenizer, "count", None) or self._encoded_count
        common = {
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            # llama-index's splitters only take len() of what their tokenizer returns.
            "tokenizer": self._counted,
        }
        self._sentence = SentenceSplitter(paragraph_separator="\n\n", **common)
        self._token = TokenTextSplitter(**common)
        self._markdown = MarkdownNodeParser()

    def _encoded_count(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def _counted(self, text: str) -> range:
        """A sequence as long as the text's token list, without building that list."""
        return range(self.count(text))

    def split(self, text: str) -> list[Chunk]:
        """Chunks of one document, in order, each within [1, chunk_size] tokens."""
        s = self.settings
        if s.strategy == "markdown":
            pieces = self._markdown_pieces(text)
        else:
            splitter = self._sentence if s.strategy == "sentence" else self._token
            pieces = [(t, {}) for t in splitter.split_text(text)]
        pieces = [(t.strip(), m) for t, m in pieces if t.strip()]
        counted = [p for t, m in pieces for p in self._enforce_limit(t, m)]
        chunks = self._with_spans(text, counted)
        # A piece of only characters the tokenizer drops (zero-width, controls) that found no
        # neighbour to join has no tokens: it is not a chunk.
        kept = [c for c in self._merge_small(text, chunks) if c.token_count > 0]
        return [replace(c, chunk_index=i) for i, c in enumerate(kept)]

    def _markdown_pieces(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        nodes = self._markdown.get_nodes_from_documents([LlamaDocument(text=text)])
        pieces: list[tuple[str, dict[str, Any]]] = []
        for node in nodes:
            section = node.get_content()
            meta = {"header_path": node.metadata.get("header_path", "/")}
            if self.count(section) <= self.settings.chunk_size:
                pieces.append((section, meta))
            else:
                pieces.extend((t, meta) for t in self._sentence.split_text(section))
        return pieces

    def _enforce_limit(self, text: str, meta: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
        """The piece with its token count, cut further if it is over chunk_size.

        Splitters count tokens per split and join them; the joined text can come out a few
        tokens over. Cut at the tokenizer's own offsets so no chunk is silently truncated.
        """
        out = []
        limit = self.settings.chunk_size
        tokens = self.count(text)
        while tokens > limit:
            end = self.tokenizer.prefix_end(text, limit)
            cut = text.rfind(" ", 0, end)
            cut = cut if cut > end // 2 else end
            head = text[:cut].strip()
            out.append((head, meta, self.count(head)))
            text = text[cut:].strip()
            tokens = self.count(text)
        if text:
            out.append((text, meta, tokens))
        return out

    def _with_spans(self, text: str, pieces: list[tuple[str, dict[str, Any], int]]) -> list[Chunk]:
        chunks = []
        cursor = 0
        for i, (piece, meta, tokens) in enumerate(pieces):
            start = text.find(piece, cursor)
            if start < 0:
                start = text.find(piece)
            end = start + len(piece) if start >= 0 else None
            if start >= 0:
                cursor = start + 1
            chunks.append(Chunk(i, piece, tokens, start if start >= 0 else None, end, meta))
        return chunks

    def _merge_small(self, text: str, chunks: list[Chunk]) -> list[Chunk]:
        """Fold pieces under min_tokens (a lone heading, say) into the next piece when it fits."""
        s = self.settings
        out: list[Chunk] = []
        pending: Chunk | None = None
        for chunk in chunks:
            if pending is not None:
                merged = self._join(text, pending, chunk)
                if merged is not None and merged.token_count <= s.chunk_size:
                    chunk = merged
                else:
                    out.append(pending)
                pending = None
            if chunk.token_count < s.min_tokens:
                pending = chunk
            else:
                out.append(chunk)
        if pending is not None:
            merged = self._join(text, out[-1], pending) if out else None
            if merged is not None and merged.token_count <= s.chunk_size:
                out[-1] = merged
            else:
                out.append(pending)
        return [
            Chunk(i, c.text, c.token_count, c.start_char, c.end_char, c.metadata) for i, c in enumerate(out)
        ]

    def _join(self, text: str, first: Chunk, second: Chunk) -> Chunk | None:
        if first.start_char is None or second.end_char is None or second.end_char < first.start_char:
            joined, start, end = f"{first.text}\n\n{second.text}", None, None
        else:
            start, end = first.start_char, second.end_char
            joined = text[start:end]
        return Chunk(0, joined, self.count(joined), start, end, second.metadata or first.metadata)
