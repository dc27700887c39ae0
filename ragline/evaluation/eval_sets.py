"""Evaluation sets: golden JSONL files, BEIR datasets, and synthetic questions made from chunks.

A question's relevant ids are documents ("<source>:<doc_id>", as retrieval reports them) or chunk
ids; each maps to a graded gain (1 for a plain list).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from ragline.config import EvalSetSettings, Settings, SourceSettings
from ragline.ingest.sources import json_lines, record_doc_id
from ragline.storage.db import query

log = logging.getLogger(__name__)


class EvalSetError(ValueError):
    """An evaluation set cannot be read at all (missing file or folder)."""


@dataclass(frozen=True)
class EvalQuestion:
    question_id: str
    question: str
    relevant: dict[str, float]
    answer: str | None = None
    kind: str | None = None
    synthetic: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A line of an evaluation file that was left out, and why."""

    where: str
    reason: str


@dataclass
class LoadedSet:
    name: str
    kind: str
    questions: list[EvalQuestion]
    rejected: list[Rejected] = field(default_factory=list)
    fingerprint: str = ""
    regenerated: bool = True  # False when stored questions were kept (synthetic sets are stable)

    @property
    def bad_lines(self) -> list[Rejected]:
        """The lines of its file that could not be used (golden, BEIR). A generator's rejects (a
        synthetic set's chunk without a question, or with a repeated one) are no file's lines: they
        are reported with the set and leave it smaller, they are not bad input."""
        return [] if self.kind == "synthetic" else self.rejected

    @property
    def lines_read(self) -> int:
        """Lines (or BEIR items) read from its file; 0 for a synthetic set, which reads none."""
        return 0 if self.kind == "synthetic" else len(self.questions) + len(self.rejected)


def _relevance(value: Any) -> dict[str, float] | None:
    if isinstance(value, dict):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            return None
        return {str(k): float(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(v): 1.0 for v in value}
    return None


def load_golden(path: Path, name: str) -> LoadedSet:
    """A golden JSONL file: {"id", "question", "relevant_documents" | "relevant_chunks" | "relevant",
    "answer"?, "kind"?, "synthetic"?} per line. Bad lines are rejected with their reason."""
    if not path.is_file():
        raise EvalSetError(f"eval set {name}: no file at {path}")
    raw = path.read_bytes()
    questions: list[EvalQuestion] = []
    rejected: list[Rejected] = []
    for lineno, line in enumerate(json_lines(raw.decode("utf-8", errors="replace")), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rejected.append(Rejected(where, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict):
            rejected.append(Rejected(where, "the line is not a JSON object"))
            continue
        qid, text = record.get("id"), record.get("question")
        if not qid or not isinstance(text, str) or not text.strip():
            rejected.append(Rejected(where, "needs a non-empty 'id' and 'question'"))
            continue
        relevant: dict[str, float] = {}
        malformed = None
        for key in ("relevant_documents", "relevant_chunks", "relevant"):
            if key in record:
                got = _relevance(record[key])
                if got is None:
                    malformed = f"{key} must be a list of ids or an id -> numeric gain map"
                    break
                relevant.update(got)
        if malformed:
            rejected.append(Rejected(where, malformed))
            continue
        if not any(g > 0 for g in relevant.values()):
            rejected.append(Rejected(where, "no relevant document or chunk ids"))
            continue
        questions.append(
            EvalQuestion(
                question_id=str(qid),
                question=text.strip(),
                relevant=relevant,
                answer=record.get("answer"),
                kind=record.get("kind"),
                synthetic=bool(record.get("synthetic", False)),
            )
        )
    return LoadedSet(name, "golden", questions, rejected, hashlib.sha256(raw).hexdigest())


def load_beir(folder: Path, name: str, source: SourceSettings, split: str = "test") -> LoadedSet:
    """A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) as an eval set whose
    relevant ids are documents of the source that loads corpus.jsonl."""
    queries_file, qrels_file = folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"
    for f in (folder / "corpus.jsonl", queries_file, qrels_file):
        if not f.is_file():
            raise EvalSetError(f"eval set {name}: BEIR folder {folder} has no {f.relative_to(folder)}")
    try:
        corpus_rel = (folder / "corpus.jsonl").resolve().relative_to(source.root.resolve()).as_posix()
    except ValueError:
        raise EvalSetError(
            f"eval set {name}: {folder / 'corpus.jsonl'} is not under the root of source "
            f"{source.name} ({source.root})"
        ) from None
    rejected: list[Rejected] = []
    texts: dict[str, str] = {}
    lines = json_lines(queries_file.read_bytes().decode("utf-8", errors="replace"))
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            texts[str(record["_id"])] = str(record["text"]).strip()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            rejected.append(Rejected(f"queries.jsonl:{lineno}", f"needs _id and text: {exc}"))
    relevant: dict[str, dict[str, float]] = {}
    with qrels_file.open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            try:
                qid, cid, score = row[0], row[1], float(row[2])
            except (IndexError, ValueError):
                rejected.append(Rejected(f"qrels/{split}.tsv:{lineno}", "needs query-id, corpus-id, score"))
                continue
            if score > 0:
                relevant.setdefault(qid, {})[f"{source.name}:{record_doc_id(corpus_rel, cid)}"] = score
    questions = []
    for qid, rel in relevant.items():
        if qid not in texts or not texts[qid]:
            rejected.append(Rejected(f"qrels/{split}.tsv", f"query {qid} is not in queries.jsonl"))
            continue
        questions.append(EvalQuestion(qid, texts[qid], rel, kind="beir"))
    digest = hashlib.sha256(queries_file.read_bytes() + qrels_file.read_bytes()).hexdigest()
    return LoadedSet(name, "beir", questions, rejected, digest)


# --- synthetic questions -------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


def heuristic_question(conn: psycopg.Connection, text: str) -> str | None:
    """A keyword question from a chunk's three most distinctive words (highest tf x BM25 idf over
    the indexed texts): "What does the documentation say about A, B and C?". It favours lexical
    retrieval by construction; use an LLM for questions that paraphrase."""
    words = list(dict.fromkeys(_WORD.findall(text)))
    if not words:
        return None
    rows = conn.execute(query("distinctive_words"), {"words": words, "text": text}).fetchall()
    picked = [r[0] for r in rows[:3]]
    if len(picked) < 2:
        return None
    listed = ", ".join(picked[:-1]) + f" and {picked[-1]}"
    return f"What does the documentation say about {listed}?"


def synthetic_set(
    conn: psycopg.Connection, spec: EvalSetSettings, chat: Any | None = None, *, min_tokens: int = 30
) -> LoadedSet:
    """Questions generated from a seeded sample of chunks, each relevant to its chunk's document.

    With a chat client (an LLM configured) the model writes the question; without one the keyword
    heuristic does. Either way the questions are flagged synthetic.
    """
    from ragline.llm import generate_questions

    rows = conn.execute(
        query("sample_chunks"),
        {"source": spec.source, "seed": str(spec.seed), "limit": spec.count, "min_tokens": min_tokens},
    ).fetchall()
    questions: list[EvalQuestion] = []
    rejected: list[Rejected] = []
    # A question generated twice (a small model falls back to the same stock reply; the heuristic
    # picks the same three words) is kept once: the set stays unique, the repeat is a rejected line.
    first_of: dict[str, str] = {}
    method = "llm" if chat is not None else "heuristic"
    for chunk_id, source, doc_id, text in rows:
        if chat is not None:
            generated = generate_questions(chat, text, n=1)
            question = generated[0] if generated else None
        else:
            question = heuristic_question(conn, text)
        if not question:
            rejected.append(Rejected(chunk_id, f"the {method} produced no question"))
            continue
        first = first_of.setdefault(_normalised_question(question), chunk_id)
        if first != chunk_id:
            rejected.append(
                Rejected(chunk_id, f"the {method} repeated the question it wrote for chunk {first}")
            )
            continue
        questions.append(
            EvalQuestion(
                question_id=f"syn-{chunk_id[:12]}",
                question=question,
                relevant={f"{source}:{doc_id}": 1.0},
                kind=f"synthetic-{method}",
                synthetic=True,
                metadata={"chunk_id": chunk_id, "method": method},
            )
        )
    return LoadedSet(spec.name, "synthetic", questions, rejected, synthetic_fingerprint(spec, method))


# Part of a synthetic set's key: 2 rejects a repeated question, so a set stored by version 1 with
# repeats (which fails eval_questions_are_unique, and holds the quality assets) is generated anew once.
SYNTHETIC_GENERATOR_VERSION = 2


def synthetic_fingerprint(spec: EvalSetSettings, method: str) -> str:
    key = [method, asdict(spec) | {"path": None}, SYNTHETIC_GENERATOR_VERSION]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def load_sets(
    conn: psycopg.Connection, settings: Settings, chat: Any | None = None, progress: Any = None
) -> list[LoadedSet]:
    """Every configured eval set, stored. Golden and BEIR sets are re-read from their files; a
    synthetic set is generated once and kept while its settings and generator stay the same, so
    that day-by-day scores compare the same questions."""
    out = []
    for spec in settings.eval_sets:
        if spec.kind == "golden":
            assert spec.path is not None
            loaded = load_golden(spec.path, spec.name)
        elif spec.kind == "beir":
            assert spec.path is not None and spec.source is not None
            loaded = load_beir(spec.path, spec.name, settings.source(spec.source), spec.split)
        else:
            fingerprint = synthetic_fingerprint(spec, "llm" if chat is not None else "heuristic")
            if stored_fingerprint(conn, spec.name) == fingerprint:
                kept = stored_questions(conn, spec.name)
                out.append(LoadedSet(spec.name, "synthetic", kept, [], fingerprint, regenerated=False))
                continue
            loaded = synthetic_set(conn, spec, chat)
        store_set(conn, loaded)
        if progress:
            progress(
                f"eval set {spec.name}: {len(loaded.questions)} questions, {len(loaded.rejected)} rejected"
            )
        out.append(loaded)
    return out


def remove_unconfigured_sets(conn: psycopg.Connection, names: list[str]) -> int:
    """Drop stored questions of eval sets no longer in ragline.yaml; their scores stay for history."""
    return conn.execute(query("delete_unconfigured_eval_sets"), {"names": names}).rowcount


# --- storage and checks --------------------------------------------------------------------------


def stored_fingerprint(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute(query("eval_set_fingerprint"), {"eval_set": name}).fetchone()
    return row[0] if row else None


def store_set(conn: psycopg.Connection, loaded: LoadedSet) -> int:
    """Replace an eval set's stored questions with these, in one transaction."""
    with conn.transaction():
        conn.execute(query("delete_eval_set"), {"eval_set": loaded.name})
        seen: set[str] = set()
        with conn.cursor() as cur:
            for q in loaded.questions:
                if q.question_id in seen:
                    continue  # a repeated id is reported by the uniqueness check, stored once
                seen.add(q.question_id)
                cur.execute(
                    query("insert_eval_question"),
                    {
                        "eval_set": loaded.name,
                        "question_id": q.question_id,
                        "question": q.question,
                        "relevant": Jsonb(q.relevant),
                        "answer": q.answer,
                        "kind": q.kind,
                        "synthetic": q.synthetic,
                        "metadata": Jsonb({**q.metadata, "fingerprint": loaded.fingerprint}),
                    },
                )
    return len(seen)


def stored_questions(conn: psycopg.Connection, name: str) -> list[EvalQuestion]:
    rows = conn.execute(query("stored_questions"), {"eval_set": name}).fetchall()
    return [
        EvalQuestion(r[0], r[1], {k: float(v) for k, v in r[2].items()}, r[3], r[4], r[5], r[6]) for r in rows
    ]


def _normalised_question(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def check_frames(conn: psycopg.Connection, sets: list[LoadedSet]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames the eval set checks validate: one row per question as loaded (repeats included),
    and one row per relevant id with missing_id set when it names nothing in the corpus."""
    questions = pd.DataFrame(
        [
            {"eval_set": s.name, "question_id": q.question_id, "normalised": _normalised_question(q.question)}
            for s in sets
            for q in s.questions
        ],
        columns=["eval_set", "question_id", "normalised"],
    )
    ids = sorted({rid for s in sets for q in s.questions for rid in q.relevant})
    found = {r[0] for r in conn.execute(query("existing_corpus_ids"), {"ids": ids})} if ids else set()
    references = pd.DataFrame(
        [
            {
                "eval_set": s.name,
                "question_id": q.question_id,
                "relevant_id": rid,
                "missing_id": None if rid in found else rid,
            }
            for s in sets
            for q in s.questions
            for rid in q.relevant
        ],
        columns=["eval_set", "question_id", "relevant_id", "missing_id"],
    )
    return questions, references
