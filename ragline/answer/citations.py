"""Citations of an answer: the passages shown to the model as numbered, untrusted blocks, and the
[n] markers of its reply mapped back to chunk ids, documents and spans."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragline.retrieval.context import Context

# [3], [1, 2], [1][2], [2-4]: every number cited; a range counts each number in it.
CITATION_MARKER = re.compile(r"\[(\d{1,4}(?:\s*(?:[,;]|-|–)\s*\d{1,4})*)\]")
_RANGE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")
_MAX_RANGE = 50  # a wider "range" is two separate numbers, not fifty citations
# A passage may not close its own block (or the list) and pose as prompt text after it.
_BLOCK_END = re.compile(r"</\s*(passage|passages)\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Citation:
    """One cited passage: its number in the prompt, the chunk and where in the document it is."""

    number: int
    chunk_id: str
    document: str
    path: str
    start_char: int | None
    end_char: int | None


def without_citations(text: str) -> str:
    """The text with its [n] citation markers removed (what similarity metrics compare)."""
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", CITATION_MARKER.sub("", text)).strip()


def passages_block(context: Context) -> str:
    """The context's passages in prompt order, each in a <passage n=...> block marked as data."""
    blocks = []
    for p in context.passages:
        text = _BLOCK_END.sub(lambda m: f"<\\/{m.group(1)}>", p.hit.text)
        source = p.hit.document.replace('"', "'")
        blocks.append(f'<passage n="{p.number}" source="{source}">\n{text}\n</passage>')
    return "\n".join(blocks)


def cited_numbers(text: str) -> list[int]:
    """The distinct numbers the text cites, in order of first citation."""
    out: list[int] = []
    for marker in CITATION_MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", marker.group(1)):
            bounds = _RANGE.fullmatch(part)
            if bounds and 0 < int(bounds.group(2)) - int(bounds.group(1)) <= _MAX_RANGE:
                numbers = list(range(int(bounds.group(1)), int(bounds.group(2)) + 1))
            else:
                numbers = [int(n) for n in re.findall(r"\d+", part)]
            out.extend(n for n in numbers if n not in out)
    return out


def resolve_citations(text: str, context: Context) -> tuple[list[Citation], list[int]]:
    """The citations the text makes that exist in the context (in order of citation), and the
    cited numbers that do not (dropped; the guard decides whether to repair or refuse)."""
    by_number = {p.number: p.hit for p in context.passages}
    citations: list[Citation] = []
    unknown: list[int] = []
    for n in cited_numbers(text):
        hit = by_number.get(n)
        if hit is None:
            unknown.append(n)
            continue
        citations.append(Citation(n, hit.chunk_id, hit.document, hit.path, hit.start_char, hit.end_char))
    return citations, unknown
