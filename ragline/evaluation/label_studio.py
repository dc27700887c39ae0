"""Label Studio import and export as pure functions over plain dicts: annotation rows to Label
Studio tasks (with their annotations) and back, and the labelling config that shows them.

A row is one person's label of one item, with the item's texts:
    {"item_id", "question", "answer", "context", "reference",
     "annotator", "faithful", "relevant", "correct", "note", "created_at"}
- item_id: int or str; question, answer: str; context, reference: str or None.
- faithful / relevant / correct: 1.0 (yes), 0.5 (partly), 0.0 (no) or None (skipped).
- note: str or None; created_at: a timezone-aware datetime or None.
- An item nobody has labelled yet is one row whose annotator (and every label) is None.

`to_tasks` makes one task per item (rows of an item grouped in first-seen order, one annotation per
labelled row); `from_tasks` gives the rows back, so `from_tasks(to_tasks(rows)) == rows` for rows
grouped by item. Tasks exported by Label Studio itself are read too: `completed_by` may be a dict
(its email names the annotator) or a bare user id (annotator "label-studio:<id>"); cancelled
(skipped) annotations are left out; keys Label Studio adds (lead_time, result ids, ...) are ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ragline.safe_text import printable

LABELS = ("faithful", "relevant", "correct")
NOTE = "note"
CHOICES = {"yes": 1.0, "partly": 0.5, "no": 0.0}
_CHOICE_OF = {value: choice for choice, value in CHOICES.items()}
DATA_FIELDS = ("question", "answer", "context", "reference")
LABEL_FIELDS = ("annotator", *LABELS, NOTE, "created_at")
ROW_FIELDS = ("item_id", *DATA_FIELDS, *LABEL_FIELDS)
TO_NAME = "answer"  # the labels are about the answer text
_QUESTIONS = {
    "faithful": "Faithful: does the context support every claim of the answer?",
    "relevant": "Relevant: does the answer address the question?",
    "correct": "Correct: does the answer agree with the reference?",
}
_HOTKEYS = {"faithful": "123", "relevant": "qwe", "correct": "asd"}


def _labelling_config() -> str:
    lines = ["<View>"]
    for field in DATA_FIELDS:
        lines += [f'  <Header value="{field.capitalize()}"/>', f'  <Text name="{field}" value="${field}"/>']
    for label in LABELS:
        lines.append(f'  <Header value="{_QUESTIONS[label]}"/>')
        lines.append(f'  <Choices name="{label}" toName="{TO_NAME}" choice="single-radio" showInline="true">')
        for choice, key in zip(CHOICES, _HOTKEYS[label], strict=True):
            lines.append(f'    <Choice value="{choice}" hotkey="{key}"/>')
        lines.append("  </Choices>")
    lines.append('  <Header value="Note"/>')
    lines.append(f'  <TextArea name="{NOTE}" toName="{TO_NAME}" editable="true" maxSubmissions="1"/>')
    lines.append("</View>")
    return "\n".join(lines) + "\n"


LABELING_CONFIG: str = _labelling_config()
"""The Label Studio labelling interface (<View> XML) for tasks made by to_tasks."""


def _shown(value: object) -> str:
    """A value from outside as it may appear in an error message: quoted, escaped, cut short."""
    return printable(repr(value), 80)


def _iso(value: object, where: str) -> str:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValueError(f"{where}: created_at must be a timezone-aware datetime, not {_shown(value)}")
    return value.isoformat()


def _annotation(row: Mapping[str, Any], where: str) -> dict:
    result = []
    for label in LABELS:
        value = row.get(label)
        if value is None:
            continue
        if isinstance(value, bool) or value not in _CHOICE_OF:
            raise ValueError(f"{where}: {label} is {_shown(value)}, not 1.0, 0.5, 0.0 or None")
        choice = _CHOICE_OF[value]
        result.append(
            {"from_name": label, "to_name": TO_NAME, "type": "choices", "value": {"choices": [choice]}}
        )
    if row.get(NOTE) is not None:
        if not isinstance(row[NOTE], str):
            raise ValueError(f"{where}: note must be text")
        text = {"text": [row[NOTE]]}
        result.append({"from_name": NOTE, "to_name": TO_NAME, "type": "textarea", "value": text})
    annotation: dict = {"completed_by": {"email": row["annotator"]}, "result": result}
    if row.get("created_at") is not None:
        annotation["created_at"] = _iso(row["created_at"], where)
    return annotation


def _check_item(values: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """An item's id and texts, as rows and task data carry them."""
    item_id = values.get("item_id")
    if isinstance(item_id, bool) or not isinstance(item_id, int | str):
        raise ValueError(f"{where}: {prefix}item_id is missing or not an int or a string")
    for field in DATA_FIELDS:
        value = values.get(field)
        if not isinstance(value, str) and not (value is None and field in ("context", "reference")):
            raise ValueError(f"{where}: {prefix}{field} must be text")


def _check_row(row: Mapping[str, Any], where: str) -> None:
    missing = [f for f in ("item_id", "question", "answer", "annotator") if f not in row]
    unknown = sorted(set(row) - set(ROW_FIELDS))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(map(printable, unknown))}"] if unknown else []
        )
        raise ValueError(f"{where}: {'; '.join(parts)}")
    _check_item(row, where)
    if row["annotator"] is not None and (not isinstance(row["annotator"], str) or not row["annotator"]):
        raise ValueError(f"{where}: annotator must be a non-empty string or None (an unlabelled item)")
    if row["annotator"] is None and any(row.get(f) is not None for f in LABEL_FIELDS):
        raise ValueError(f"{where}: labels without an annotator")


def to_tasks(items: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Label Studio tasks (JSON-ready dicts) from annotation rows: one task per item, its texts as
    data, one annotation per labelled row."""
    tasks: dict[int | str, dict] = {}
    for n, row in enumerate(items):
        where = f"row {n} (item {_shown(row.get('item_id'))})"
        _check_row(row, where)
        data = {field: row.get(field) for field in DATA_FIELDS} | {"item_id": row["item_id"]}
        task = tasks.get(row["item_id"])
        if task is None:
            task_id = row["item_id"] if isinstance(row["item_id"], int) else len(tasks) + 1
            task = tasks[row["item_id"]] = {"id": task_id, "data": data, "annotations": []}
        elif task["data"] != data:
            raise ValueError(f"{where}: the item's texts differ from an earlier row of the same item")
        if row["annotator"] is not None:
            task["annotations"].append(_annotation(row, where))
    return list(tasks.values())


def _annotator(completed_by: object, where: str) -> str:
    if isinstance(completed_by, Mapping):
        email = completed_by.get("email")
        if isinstance(email, str) and email:
            return email
        completed_by = completed_by.get("id")
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return f"label-studio:{completed_by}"
    raise ValueError(f"{where}: completed_by names no annotator (an email or a user id)")


def _created_at(value: object, where: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{where}: created_at {_shown(value)} is not an ISO 8601 time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _result_value(result: object, where: str) -> tuple[str, object]:
    """The (field, value) one result item sets: a label's number, or the note's text."""
    if not isinstance(result, Mapping) or not isinstance(result.get("value"), Mapping):
        raise ValueError(f"{where}: a result is not an object with a value")
    name, value = result.get("from_name"), result["value"]
    if name in LABELS:
        choices = value.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            raise ValueError(f"{where}: {name} needs exactly one choice, got {_shown(choices)}")
        if choices[0] not in CHOICES:
            raise ValueError(
                f"{where}: {name} choice {_shown(choices[0])} is not one of {', '.join(CHOICES)}"
            )
        return name, CHOICES[choices[0]]
    if name == NOTE:
        text = value.get("text")
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            raise ValueError(f"{where}: note text is not a list of strings")
        return NOTE, "\n".join(text)
    raise ValueError(f"{where}: result from {_shown(name)} is not one of {', '.join((*LABELS, NOTE))}")


def _task_rows(task: object, n: int) -> list[dict]:
    if not isinstance(task, Mapping):
        raise ValueError(f"task {n}: not an object")
    where = f"task {_shown(task.get('id', n))}"
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: no data object")
    _check_item(data, where, "data.")
    item = {"item_id": data["item_id"]} | {field: data.get(field) for field in DATA_FIELDS}
    annotations = task.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{where}: annotations is not a list")
    rows = []
    for k, annotation in enumerate(annotations):
        at = f"{where}, annotation {k}"
        if not isinstance(annotation, Mapping):
            raise ValueError(f"{at}: not an object")
        if annotation.get("was_cancelled"):
            continue  # skipped in Label Studio: no label
        row = item | {label: None for label in LABELS} | {NOTE: None}
        row["annotator"] = _annotator(annotation.get("completed_by"), at)
        row["created_at"] = _created_at(annotation.get("created_at"), at)
        results = annotation.get("result", [])
        if not isinstance(results, list):
            raise ValueError(f"{at}: result is not a list")
        for result in results:
            field, value = _result_value(result, at)
            row[field] = value
        rows.append({field: row[field] for field in ROW_FIELDS})
    if not rows:
        rows.append(item | {field: None for field in LABEL_FIELDS})
    return rows


def from_tasks(tasks: Sequence[object]) -> list[dict]:
    """Annotation rows from Label Studio tasks: one per (not cancelled) annotation, or one row with
    annotator None for a task nobody labelled. Malformed tasks raise ValueError naming the task."""
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise ValueError("Label Studio tasks are a JSON list of task objects")
    return [row for n, task in enumerate(tasks) for row in _task_rows(task, n)]
