"""Scoring of recognizers and injection flags on a labelled set of snippets
(examples/guardrails/snippets.jsonl: text, expected spans with their kinds, expected flags)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Span = tuple[str, int, int]  # kind, start, end


@dataclass
class Counts:
    """True positives, false positives and false negatives of one kind."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def load_snippets(path: Path) -> list[dict[str, Any]]:
    """The labelled snippets of a JSONL file."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def score_spans(
    snippets: Iterable[dict[str, Any]], detect: Callable[[str], list[Span]], kinds: Iterable[str]
) -> tuple[dict[str, Counts], Counts]:
    """Counts per kind (a hit is a found span of the expected kind that overlaps the expected one),
    and the leak count of all kinds: an expected span is covered when found spans of any kind
    cover each of its characters (what keeps it from reaching a model)."""
    per_kind = {kind: Counts() for kind in kinds}
    covered = Counts()
    for snippet in snippets:
        expected = [(s["kind"], s["start"], s["end"]) for s in snippet["spans"] if s["kind"] in per_kind]
        found = [span for span in detect(snippet["text"]) if span[0] in per_kind]
        matched: set[int] = set()
        for kind, start, end in expected:
            hit = next(
                (
                    i
                    for i, f in enumerate(found)
                    if i not in matched and f[0] == kind and f[1] < end and start < f[2]
                ),
                None,
            )
            if hit is None:
                per_kind[kind].fn += 1
            else:
                matched.add(hit)
                per_kind[kind].tp += 1
            chars = set().union(*(range(f[1], f[2]) for f in found)) if found else set()
            if set(range(start, end)) <= chars:
                covered.tp += 1
            else:
                covered.fn += 1
        for i, (kind, start, end) in enumerate(found):
            if i not in matched:
                per_kind[kind].fp += 1
                if not any(s < end and start < e for _, s, e in expected):
                    covered.fp += 1
    return per_kind, covered


def score_flags(
    snippets: Iterable[dict[str, Any]], flags: Callable[[str], list[str]]
) -> tuple[Counts, dict[str, Counts]]:
    """Passage-level counts (flagged at all, against expected to be flagged) and counts per flag."""
    passages = Counts()
    per_flag: dict[str, Counts] = {}
    for snippet in snippets:
        if "injection" not in snippet:
            continue
        expected, got = set(snippet["injection"]), set(flags(snippet["text"]))
        if expected and got:
            passages.tp += 1
        elif got:
            passages.fp += 1
        elif expected:
            passages.fn += 1
        for name in expected | got:
            counts = per_flag.setdefault(name, Counts())
            counts.tp += name in expected and name in got
            counts.fp += name in got and name not in expected
            counts.fn += name in expected and name not in got
    return passages, per_flag
