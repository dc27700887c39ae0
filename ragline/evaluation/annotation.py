"""Human evaluation: the daily queue of answers for people to label, their labels, agreement
between annotators and between the judge and people, promotion of approved answers into a golden
set, and Label Studio import and export."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ragline.answer.citations import cited_numbers, without_citations
from ragline.config import AnnotationSettings, ConfigError
from ragline.evaluation import label_studio
from ragline.evaluation.agreement import cohen_kappa, krippendorff_alpha, spearman
from ragline.evaluation.label_studio import CHOICES, LABELS
from ragline.safe_text import printable
from ragline.storage.db import query

CHOICE_NAMES = {value: name for name, value in CHOICES.items()}
SOURCES = ("web", "cli", "label_studio")
# The judge metric each human label is compared with.
JUDGE_METRIC = {"faithful": "faithfulness", "relevant": "relevance", "correct": "correctness"}
REASONS = ("low_confidence", "disagreement", "random")
RANDOM_DEFAULT = 3  # control items per day when neither random_share nor random_count is given
MAX_NOTE_CHARS = 4_000
MAX_ANNOTATOR_CHARS = 100
MAX_ID = 2**63 - 1  # bigint
KIND = "human"  # the golden lines' kind


class AnnotationError(ConfigError):
    """A label, item or file that cannot be taken as given (the message says why): bad input, so
    the CLI's exit 2 and the API's 422 like any ConfigError."""


# --- the queue -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One answer selected for labelling, with copies of what was judged and why it was picked."""

    partition: dt.date
    eval_set: str
    variant: str
    question_id: str
    question_hash: str
    answer_hash: str
    reasons: tuple[str, ...]
    question: str
    answer: str
    context: list[dict[str, Any]]
    reference: str | None
    judge: dict[str, dict[str, Any]]  # metric -> {mean, low, high, unmeasured}
    similarity: dict[str, float | None]  # metric -> value
    priority: float = 0.0  # how far past its threshold a flagged item is


def _flags(metrics: dict[str, dict[str, Any]], settings: AnnotationSettings) -> dict[str, float]:
    """The reasons an answer needs people, each with how far past its threshold it is."""
    flags: dict[str, float] = {}
    for m in metrics.values():
        if m.get("kind") != "judge":
            continue
        if (m.get("unmeasured") or 0) > 0:
            flags["low_confidence"] = max(flags.get("low_confidence", 0.0), 1.0)
        if m.get("low") is not None and m.get("high") is not None:
            excess = m["high"] - m["low"] - settings.max_interval_width
            if excess > 0:
                flags["low_confidence"] = max(flags.get("low_confidence", 0.0), excess)
    correctness = (metrics.get("correctness") or {}).get("mean")
    if correctness is not None:
        for name in ("token_f1", "embedding_cosine"):
            other = (metrics.get(name) or {}).get("mean")
            if other is not None and abs(correctness - other) > settings.disagreement:
                excess = abs(correctness - other) - settings.disagreement
                flags["disagreement"] = max(flags.get("disagreement", 0.0), excess)
    return flags


def random_size(settings: AnnotationSettings, answers: int) -> int:
    """How many answers of a day go to the random control sample."""
    if settings.random_count is not None:
        wanted = settings.random_count
    elif settings.random_share is not None:
        wanted = round(settings.random_share * answers)
    else:
        wanted = RANDOM_DEFAULT
    return min(wanted, answers, settings.queue_size)


def select_queue(conn: psycopg.Connection, day: dt.date, settings: AnnotationSettings) -> list[QueueItem]:
    """The answers of partition `day` to queue: a seeded random control sample, then low judge
    confidence and judge-similarity disagreement (largest first), up to queue_size a day; answers
    already queued (any day) are never picked again."""
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(query("annotation_candidates"), {"partition": day})
        .fetchall()
    )
    slots = (
        settings.queue_size - conn.execute(query("annotation_queued_on"), {"partition": day}).fetchone()[0]
    )
    if slots <= 0 or not rows:
        return []
    # Drawn from every answer of the day, queued or not, so a rerun draws the same control sample.
    rng = random.Random(f"{settings.seed}:{day.isoformat()}")
    control = {id(r) for r in rng.sample(rows, random_size(settings, len(rows)))}
    picked: list[QueueItem] = []
    flagged: list[QueueItem] = []
    for r in rows:
        if r["queued"]:
            continue
        flags = _flags(r["metrics"], settings)
        reasons = [
            reason for reason in REASONS if reason in flags or (reason == "random" and id(r) in control)
        ]
        if not reasons:
            continue
        item = _queue_item(day, r, tuple(reasons), max(flags.values(), default=0.0))
        (picked if "random" in reasons else flagged).append(item)
    flagged.sort(key=lambda i: (-i.priority, i.eval_set, i.variant, i.question_id))
    return (picked + flagged)[:slots]


def _queue_item(day: dt.date, row: dict[str, Any], reasons: tuple[str, ...], priority: float) -> QueueItem:
    metrics = row["metrics"]
    return QueueItem(
        partition=day,
        eval_set=row["eval_set"],
        variant=row["variant"],
        question_id=row["question_id"],
        question_hash=row["question_hash"],
        answer_hash=row["answer_hash"],
        reasons=reasons,
        question=row["question"],
        answer=row["answer"],
        context=list(row["context"] or []),
        reference=row["reference"],
        judge={
            name: {k: m.get(k) for k in ("mean", "low", "high", "unmeasured")}
            for name, m in metrics.items()
            if m.get("kind") == "judge"
        },
        similarity={name: m.get("mean") for name, m in metrics.items() if m.get("kind") == "similarity"},
        priority=priority,
    )


def store_queue(conn: psycopg.Connection, items: Sequence[QueueItem]) -> list[tuple[int, QueueItem]]:
    """Queue the items in one transaction; returns the ones stored with their ids (an answer
    queued meanwhile is skipped, never queued twice)."""
    stored = []
    with conn.transaction():
        for item in items:
            row = conn.execute(query("insert_annotation_item"), _item_params(item)).fetchone()
            if row is not None:
                stored.append((int(row[0]), item))
    return stored


def _item_params(item: QueueItem) -> dict[str, Any]:
    params = asdict(item)
    del params["priority"]
    params["reasons"] = list(item.reasons)
    for key in ("context", "judge", "similarity"):
        params[key] = Jsonb(params[key])
    return params


def status_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Items by status: open, labelled, promoted."""
    counts = dict.fromkeys(("open", "labelled", "promoted"), 0)
    counts.update({status: int(n) for status, n in conn.execute(query("annotation_status_counts"))})
    return counts


# --- labels ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One annotator's verdicts on one item: 1.0 yes, 0.5 partly, 0.0 no, None skipped."""

    item_id: int
    annotator: str
    faithful: float | None
    relevant: float | None
    correct: float | None
    note: str = ""
    source: str = "web"
    created_at: dt.datetime | None = None  # None: now; an import keeps the file's


def choice(value: Any, what: str) -> float | None:
    """A verdict as stored: yes/partly/no (or 1/0.5/0); None, "" or "skip" for none."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "skip")):
        return None
    if isinstance(value, str) and value.strip().lower() in CHOICES:
        return CHOICES[value.strip().lower()]
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value) in CHOICE_NAMES:
        return float(value)
    raise AnnotationError(
        f"{what}: expected yes, partly or no (or nothing to skip), got '{printable(value, 40)}'"
    )


def annotator_name(value: Any) -> str:
    """An annotator's name, checked: 1-100 characters, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError("the annotator's name is empty")
    name = value.strip()
    if len(name) > MAX_ANNOTATOR_CHARS or printable(name) != name:
        raise AnnotationError(
            f"an annotator's name is 1-{MAX_ANNOTATOR_CHARS} characters without control characters, "
            f"got '{printable(name, 60)}'"
        )
    return name


def make_label(
    item_id: Any,
    annotator: Any,
    *,
    faithful: Any = None,
    relevant: Any = None,
    correct: Any = None,
    note: Any = "",
    source: str = "web",
    created_at: dt.datetime | None = None,
) -> Label:
    """A label from outside input, every field checked (AnnotationError says which is wrong)."""
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 1 <= item_id <= MAX_ID:
        raise AnnotationError(f"item_id must be a whole number of at least 1, got '{printable(item_id, 40)}'")
    if source not in SOURCES:
        raise AnnotationError(f"source must be one of {SOURCES}")
    note = "" if note is None else note
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS or "\x00" in note:
        raise AnnotationError(f"note: text of at most {MAX_NOTE_CHARS:,} characters, without NUL")
    label = Label(
        item_id,
        annotator_name(annotator),
        choice(faithful, "faithful"),
        choice(relevant, "relevant"),
        choice(correct, "correct"),
        note.strip(),
        source,
        created_at,
    )
    if label.faithful is None and label.relevant is None and label.correct is None and not label.note:
        raise AnnotationError(f"item {item_id}: nothing to save (no verdict and no note)")
    return label


def save_label(conn: psycopg.Connection, label: Label) -> int:
    """Store a label (replacing this annotator's earlier one on the item); returns its id."""
    try:
        with conn.transaction():
            [label_id] = conn.execute(query("upsert_human_label"), asdict(label)).fetchone()
            conn.execute(query("mark_item_labelled"), {"item_id": label.item_id})
    except psycopg.errors.ForeignKeyViolation:
        raise AnnotationError(f"no annotation item {label.item_id}") from None
    return int(label_id)


def items_for(conn: psycopg.Connection, annotator: str, limit: int = 200) -> list[dict[str, Any]]:
    """The items an annotator has yet to label, oldest first."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(query("annotation_items_for"), {"annotator": annotator, "limit": limit}).fetchall()


def open_count(conn: psycopg.Connection, annotator: str) -> int:
    """How many items an annotator has yet to label."""
    return int(conn.execute(query("annotation_open_count"), {"annotator": annotator}).fetchone()[0])


def items_with_labels(
    conn: psycopg.Connection, item_ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Items (all, or these) with every label given on them."""
    cur = conn.cursor(row_factory=dict_row)
    ids = None if item_ids is None else list(item_ids)
    return cur.execute(query("annotation_items_with_labels"), {"item_ids": ids}).fetchall()


# --- agreement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementRow:
    """One agreement statistic of a label kind: between annotators, or between the judge and people."""

    scope: str  # annotators | judge
    label: str  # faithful, relevant, correct
    statistic: str  # krippendorff_alpha, cohen_kappa, spearman, bin_match
    value: float | None  # None: too few labels (or no variation) to compute it
    n: int  # items it was computed over


def verdict_bin(value: float) -> str:
    """A score as yes (>= 2/3), no (<= 1/3) or partly."""
    if value >= 2 / 3:
        return "yes"
    if value <= 1 / 3:
        return "no"
    return "partly"


def _statistic(compute: Callable[..., float], *args: Any) -> float | None:
    """A statistic, or None where the labels leave it undefined (one value only, too few items)."""
    try:
        value = float(compute(*args))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return None
    return value if math.isfinite(value) else None


def compute_agreement(labels: Iterable[dict[str, Any]]) -> list[AgreementRow]:
    """Agreement over labels ({item_id, annotator, faithful, relevant, correct, judge}): per label
    kind, Krippendorff's alpha (ordinal) between annotators, Cohen's kappa when exactly two
    annotators labelled, and the judge against the people's mean (kappa on bins, Spearman, the
    share of matching bins)."""
    labels = list(labels)
    judges = {r["item_id"]: r["judge"] or {} for r in labels}
    rows: list[AgreementRow] = []
    for kind in LABELS:
        by_item: dict[int, dict[str, float]] = {}
        for r in labels:
            if r[kind] is not None:
                by_item.setdefault(r["item_id"], {})[r["annotator"]] = float(r[kind])
        rows += _between_annotators(kind, by_item)
        metric = JUDGE_METRIC[kind]
        pairs = [
            ((judges[item].get(metric) or {}).get("mean"), sum(values.values()) / len(values))
            for item, values in by_item.items()
        ]
        rows += _judge_against_people(kind, [(j, p) for j, p in pairs if j is not None])
    return rows


def _between_annotators(kind: str, by_item: dict[int, dict[str, float]]) -> list[AgreementRow]:
    annotators = sorted({a for values in by_item.values() for a in values})
    units = [[values.get(a) for a in annotators] for values in by_item.values()]
    paired = [u for u in units if sum(v is not None for v in u) >= 2]
    alpha = _statistic(krippendorff_alpha, paired, "ordinal") if paired else None
    rows = [AgreementRow("annotators", kind, "krippendorff_alpha", alpha, len(paired))]
    if len(annotators) == 2:
        both = [u for u in paired if None not in u]
        first, second = [verdict_bin(u[0]) for u in both], [verdict_bin(u[1]) for u in both]
        kappa = _statistic(cohen_kappa, first, second) if both else None
        rows.append(AgreementRow("annotators", kind, "cohen_kappa", kappa, len(both)))
    return rows


def _judge_against_people(kind: str, pairs: list[tuple[float, float]]) -> list[AgreementRow]:
    n = len(pairs)
    judge, people = [j for j, _ in pairs], [p for _, p in pairs]
    judge_bins, people_bins = [verdict_bin(j) for j in judge], [verdict_bin(p) for p in people]
    matches = sum(a == b for a, b in zip(judge_bins, people_bins, strict=True))
    return [
        AgreementRow(
            "judge", kind, "cohen_kappa", _statistic(cohen_kappa, judge_bins, people_bins) if n else None, n
        ),
        AgreementRow("judge", kind, "spearman", _statistic(spearman, judge, people) if n >= 2 else None, n),
        AgreementRow("judge", kind, "bin_match", matches / n if n else None, n),
    ]


def agreement(conn: psycopg.Connection, day: dt.date) -> list[AgreementRow]:
    """Agreement over every label given until the end of `day` (UTC), stored as that day's rows
    (replacing any earlier computation of the day) in one transaction."""
    until = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    labels = (
        conn.cursor(row_factory=dict_row)
        .execute(query("annotation_labels_until"), {"until": until})
        .fetchall()
    )
    rows = compute_agreement(labels)
    with conn.transaction():
        conn.execute(query("delete_annotation_agreement"), {"partition": day})
        for row in rows:
            conn.execute(query("insert_annotation_agreement"), {"partition": day, **asdict(row)})
    return rows


@dataclass(frozen=True)
class Calibration:
    """How well a judge metric matches people's labels."""

    metric: str
    n: int
    bin_match: float | None  # share of items whose yes/partly/no bin matches the people's
    kappa: float | None
    spearman: float | None


def calibration(rows: Sequence[AgreementRow]) -> list[Calibration]:
    """Judge calibration per judge metric, from the judge-scope agreement rows."""
    out = []
    for kind in LABELS:
        stats = {r.statistic: r for r in rows if r.scope == "judge" and r.label == kind}
        if not stats:
            continue
        value = {
            name: (stats[name].value if name in stats else None)
            for name in ("bin_match", "cohen_kappa", "spearman")
        }
        n = max(r.n for r in stats.values())
        out.append(
            Calibration(JUDGE_METRIC[kind], n, value["bin_match"], value["cohen_kappa"], value["spearman"])
        )
    return out


def agreement_summary(conn: psycopg.Connection) -> list[str]:
    """The latest day's agreement, one line per judge metric, for `ragline status` and the board:
    the judge against people (kappa, Spearman, matching bins, n) and people among themselves."""
    rows = conn.execute(query("latest_annotation_agreement")).fetchall()
    if not rows:
        return []
    day = rows[0][0]
    stats = {(scope, label, statistic): (value, n) for _day, scope, label, statistic, value, n in rows}

    def shown(scope: str, kind: str, statistic: str) -> str:
        value, _n = stats.get((scope, kind, statistic), (None, 0))
        return "-" if value is None else f"{value:.2f}"

    lines = []
    for kind in LABELS:
        n = stats.get(("judge", kind, "bin_match"), (None, 0))[1]
        pairs = stats.get(("annotators", kind, "krippendorff_alpha"), (None, 0))[1]
        lines.append(
            f"{JUDGE_METRIC[kind]} vs people ({day}): kappa {shown('judge', kind, 'cohen_kappa')}, "
            f"Spearman {shown('judge', kind, 'spearman')}, bins match {shown('judge', kind, 'bin_match')} "
            f"(n={n}); annotators alpha {shown('annotators', kind, 'krippendorff_alpha')} (n={pairs})"
        )
    return lines


# --- promotion into a golden set -------------------------------------------------------------------


def approved(item: dict[str, Any]) -> str | None:
    """None when people approved the item's answer (every label that judges correctness says yes,
    and at least one does; none says it is unfaithful), else why not."""
    verdicts = [label["correct"] for label in item["labels"] if label["correct"] is not None]
    if not verdicts:
        return "no label judges its correctness"
    if any(v != 1.0 for v in verdicts):
        return "not every annotator judged it correct"
    if any(label["faithful"] == 0.0 for label in item["labels"]):
        return "an annotator judged it unfaithful to its context"
    return None


def golden_line(item: dict[str, Any]) -> dict[str, Any]:
    """An item as a golden-set line (examples/golden/questions.jsonl's format): its relevant
    documents are those the answer cites (none when it cites none), its answer without the markers."""
    cited = set(cited_numbers(item["answer"]))
    documents = [
        p["document"] for p in item["context"] or [] if p.get("document") and p.get("number") in cited
    ]
    return {
        "id": f"human-{item['item_id']}",
        "question": item["question"],
        "relevant_documents": list(dict.fromkeys(documents)),
        "answer": without_citations(item["answer"]),
        "kind": KIND,
    }


def unpromotable(line: dict[str, Any]) -> str | None:
    """Why a golden line would be false (an empty answer, or no cited document), else None."""
    if not line["answer"]:
        return "its answer is empty (an abstention): a golden line needs an answer"
    if not line["relevant_documents"]:
        return "its answer cites no document of its context, so none can be recorded as relevant"
    return None


@dataclass
class Promotion:
    """What a promotion did: lines written, items already in the file, items refused and why."""

    written: list[dict[str, Any]] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # approved, not promotable (unnamed runs)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def promote(conn: psycopg.Connection, path: Path, item_ids: Sequence[int] | None = None) -> Promotion:
    """Append approved items (all, or these) to the golden JSONL file at `path` and mark them
    promoted. The file is rewritten atomically; an item whose id or question is in it already is
    not written again; an empty or uncited answer never is. If a named item cannot be promoted,
    nothing is, and the error says why."""
    items = items_with_labels(conn, item_ids)
    result = Promotion()
    if item_ids is not None:
        missing = sorted(set(item_ids) - {i["item_id"] for i in items})
        if missing:
            raise AnnotationError(f"no annotation item {', '.join(map(str, missing))}")
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    ids, questions = set(), set()
    for line in existing.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the file's own problem; load_golden reports it
        if isinstance(record, dict):
            ids.add(str(record.get("id")))
            questions.add(_normalised(str(record.get("question", ""))))
    done: list[int] = []
    for item in items:
        line = golden_line(item)
        if line["id"] in ids:  # written by an earlier promotion (whose database update may have failed)
            result.already.append(item["item_id"])
            done.append(item["item_id"])
            continue
        why = approved(item)
        false_line = unpromotable(line) if why is None else None
        if why is None and false_line is None and _normalised(line["question"]) in questions:
            why = "the golden set has this question already"
        if why is not None or false_line is not None:
            if item_ids is not None:
                result.refused[item["item_id"]] = why or str(false_line)
            elif false_line is not None:
                result.skipped[item["item_id"]] = false_line
            continue
        result.written.append(line)
        ids.add(line["id"])
        questions.add(_normalised(line["question"]))
        done.append(item["item_id"])
    if result.refused:  # named items: all of them or none
        reasons = "; ".join(f"item {i}: {why}" for i, why in sorted(result.refused.items()))
        raise AnnotationError(f"nothing promoted: {reasons}")
    if result.written:
        text = existing if not existing or existing.endswith("\n") else existing + "\n"
        text += "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in result.written)
        _write_atomically(path, text)
    if done:
        conn.execute(query("mark_items_promoted"), {"item_ids": done})
    return result


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file with `text` in one step: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- Label Studio ----------------------------------------------------------------------------------

RAGLINE_KEY = "ragline"  # the task data key that carries what Label Studio does not show


def context_text(context: Sequence[dict[str, Any]]) -> str:
    """The context's passages as one text: [n] document, then the passage."""
    return "\n\n".join(f"[{p.get('number')}] {p.get('document', '')}\n{p.get('text', '')}" for p in context)


def export_tasks(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every item with its labels as Label Studio tasks; each task's data also carries the item's
    key, context passages and judge scores under "ragline", so an import elsewhere rebuilds it."""
    items = items_with_labels(conn)
    tasks = label_studio.to_tasks([row for item in items for row in _ls_rows(item)])
    for task, item in zip(tasks, items, strict=True):
        task["data"][RAGLINE_KEY] = {
            key: item[key]
            for key in (
                "eval_set",
                "variant",
                "question_id",
                "question_hash",
                "reasons",
                "context",
                "judge",
                "similarity",
            )
        } | {"partition": item["partition"].isoformat()}
    return tasks


def _ls_rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """An item as label_studio's rows: one per label, or one without an annotator if it has none."""
    texts = {
        "item_id": item["item_id"],
        "question": item["question"],
        "answer": item["answer"],
        "context": context_text(item["context"] or []),
        "reference": item["reference"],
    }
    unlabelled = {"annotator": None, **dict.fromkeys(LABELS), "note": None, "created_at": None}
    return [
        texts
        | {
            "annotator": label["annotator"],
            **{kind: label[kind] for kind in LABELS},
            "note": label["note"] or None,
            "created_at": dt.datetime.fromisoformat(label["created_at"]),
        }
        for label in item["labels"]
    ] or [texts | unlabelled]


@dataclass(frozen=True)
class Imported:
    items_created: int
    labels_saved: int


def import_tasks(conn: psycopg.Connection, tasks: Any) -> Imported:
    """Labels from Label Studio tasks into human_labels (source label_studio), in one transaction.
    A task's item is the stored one with the same question and answer (by its ragline key, else by
    item id); if there is none, it is created from the task's data."""
    if not isinstance(tasks, list):
        raise AnnotationError("a Label Studio export is a JSON list of tasks")
    try:
        labels = label_studio.from_tasks(tasks)
    except ValueError as exc:
        raise AnnotationError(str(exc)) from None
    created = saved = 0
    item_of: dict[Any, int] = {}
    with conn.transaction():
        for n, task in enumerate(tasks):
            data = task.get("data") or {}
            item_id, new = _task_item(conn, data, f"task {printable(task.get('id', n), 40)}")
            item_of[data.get("item_id")] = item_id
            created += new
        for raw in labels:
            if raw["annotator"] is None:
                continue  # a task nobody labelled
            if raw["item_id"] not in item_of:
                raise AnnotationError(
                    f"a label names item {printable(raw['item_id'], 40)}, which no task carries"
                )
            label = make_label(
                item_of[raw["item_id"]],
                raw["annotator"],
                faithful=raw.get("faithful"),
                relevant=raw.get("relevant"),
                correct=raw.get("correct"),
                note=raw.get("note") or "",
                source="label_studio",
                created_at=_timestamp(raw.get("created_at")),
            )
            save_label(conn, label)
            saved += 1
    return Imported(created, saved)


def _timestamp(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        stamp = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AnnotationError(f"created_at: not an ISO timestamp: '{printable(value, 40)}'") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _task_item(conn: psycopg.Connection, data: dict[str, Any], where: str) -> tuple[int, bool]:
    """The item a task is about (id, created now?)."""
    question, answer = data.get("question"), data.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise AnnotationError(f"{where}: data needs the question and answer texts")
    if _holds_nul(data):  # Postgres text and jsonb hold no NUL
        raise AnnotationError(f"{where}: the task's data holds a NUL character")
    extra = data.get(RAGLINE_KEY) if isinstance(data.get(RAGLINE_KEY), dict) else {}
    shapes = {"context": list, "judge": dict, "similarity": dict, "reasons": list}
    wrong = [k for k, kind in shapes.items() if extra.get(k) is not None and not isinstance(extra[k], kind)]
    if wrong or not all(isinstance(p, dict) for p in extra.get("context") or []):
        raise AnnotationError(f"{where}: data.{RAGLINE_KEY} is malformed ({', '.join(wrong) or 'context'})")
    answer_hash = hashlib.sha256(answer.encode("utf-8")).hexdigest()
    key = {
        "eval_set": str(extra.get("eval_set") or "label_studio"),
        "variant": str(extra.get("variant") or "imported"),
        "question_id": str(extra.get("question_id") or f"ls-{data.get('item_id')}"),
        "question_hash": str(
            extra.get("question_hash") or hashlib.sha256(question.encode()).hexdigest()[:16]
        ),
        "answer_hash": answer_hash,
    }
    found = conn.execute(query("annotation_item_by_key"), key).fetchone()
    if found is not None:
        return int(found[0]), False
    if not extra and isinstance(data.get("item_id"), int):
        same = items_with_labels(conn, [data["item_id"]])
        if same and same[0]["question"] == question and same[0]["answer"] == answer:
            return int(data["item_id"]), False
    try:
        partition = dt.date.fromisoformat(str(extra.get("partition") or dt.datetime.now(dt.UTC).date()))
    except ValueError:
        raise AnnotationError(f"{where}: partition is not a date") from None
    item = QueueItem(
        partition=partition,
        **key,
        reasons=tuple(str(r) for r in extra.get("reasons") or ("imported",)),
        question=question,
        answer=answer,
        context=list(extra.get("context") or []),
        reference=data.get("reference") or None,
        judge=dict(extra.get("judge") or {}),
        similarity=dict(extra.get("similarity") or {}),
    )
    [item_id] = conn.execute(query("insert_annotation_item"), _item_params(item)).fetchone()
    return int(item_id), True
