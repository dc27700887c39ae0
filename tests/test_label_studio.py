"""Label Studio converters: rows round-trip through task JSON, a task as Label Studio exports it is
read, and malformed tasks are refused with the task named."""

from __future__ import annotations

import copy
import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest

from ragline.evaluation.label_studio import CHOICES, LABELING_CONFIG, LABELS, from_tasks, to_tasks

ITEM = {
    "item_id": 41,
    "question": "How many vacation days do I get?",
    "answer": "25 days a year [1].",
    "context": "[1] Employees receive 25 days of annual leave.",
    "reference": "25 days per year.",
}
UTC = dt.UTC
ROWS = [
    ITEM
    | {
        "annotator": "ana@example.com",
        "faithful": 1.0,
        "relevant": 0.5,
        "correct": None,
        "note": "cites [1]\nsecond line",
        "created_at": dt.datetime(2026, 11, 29, 10, 20, 30, 123456, tzinfo=UTC),
    },
    ITEM
    | {
        "annotator": "bo",
        "faithful": 0.0,
        "relevant": None,
        "correct": 0.0,
        "note": None,
        "created_at": None,
    },
    {
        "item_id": "q-7",
        "question": "Who signs off on travel?",
        "answer": "",
        "context": None,
        "reference": None,
        "annotator": None,
        "faithful": None,
        "relevant": None,
        "correct": None,
        "note": None,
        "created_at": None,
    },
]


def test_rows_round_trip_through_label_studio_json():
    tasks = json.loads(json.dumps(to_tasks(ROWS)))  # what a file holds
    assert from_tasks(tasks) == ROWS
    first = tasks[0]
    assert first["data"] == ITEM | {"item_id": 41} and first["id"] == 41
    assert [a["completed_by"] for a in first["annotations"]] == [
        {"email": "ana@example.com"},
        {"email": "bo"},
    ]
    assert first["annotations"][0]["result"][1] == {
        "from_name": "relevant",
        "to_name": "answer",
        "type": "choices",
        "value": {"choices": ["partly"]},
    }
    assert tasks[1]["annotations"] == [] and tasks[1]["data"]["item_id"] == "q-7"


def test_the_labelling_config_offers_exactly_the_choices_the_converters_read():
    view = ET.fromstring(LABELING_CONFIG)
    choices = {c.get("name"): [x.get("value") for x in c.findall("Choice")] for c in view.iter("Choices")}
    assert choices == {label: list(CHOICES) for label in LABELS}
    assert [t.get("name") for t in view.iter("TextArea")] == ["note"]
    assert {t.get("value") for t in view.iter("Text")} == {"$question", "$answer", "$context", "$reference"}


# A task as Label Studio 1.x exports it ("JSON" export): completed_by as a bare user id, extra keys
# on the task, the annotation and each result, a cancelled (skipped) annotation, a Z time.
EXPORTED = {
    "id": 1031,
    "data": {**ITEM, "item_id": 41},
    "annotations": [
        {
            "id": 77,
            "completed_by": 3,
            "result": [
                {
                    "value": {"choices": ["no"]},
                    "id": "x_Jq1",
                    "from_name": "correct",
                    "to_name": "answer",
                    "type": "choices",
                    "origin": "manual",
                },
                {
                    "value": {"text": ["off by one", "see policy"]},
                    "id": "x_Jq2",
                    "from_name": "note",
                    "to_name": "answer",
                    "type": "textarea",
                    "origin": "manual",
                },
            ],
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2026-11-28T09:15:02.481516Z",
            "updated_at": "2026-11-28T09:15:02.481531Z",
            "draft_created_at": None,
            "lead_time": 12.34,
            "prediction": {},
            "result_count": 0,
            "unique_id": "c1b2a3",
            "import_id": None,
            "last_action": None,
            "task": 1031,
            "project": 5,
            "updated_by": 3,
            "parent_prediction": None,
            "parent_annotation": None,
            "last_created_by": None,
        },
        {"id": 78, "completed_by": {"id": 4, "email": "cy@example.com"}, "result": [], "was_cancelled": True},
    ],
    "predictions": [],
    "file_upload": None,
    "drafts": [],
    "meta": {},
    "created_at": "2026-11-28T09:00:00.000000Z",
    "updated_at": "2026-11-28T09:15:02.000000Z",
    "inner_id": 1,
    "total_annotations": 1,
    "cancelled_annotations": 1,
    "total_predictions": 0,
    "comment_count": 0,
    "unresolved_comment_count": 0,
    "last_comment_updated_at": None,
    "project": 5,
    "updated_by": 3,
    "comment_authors": [],
}


def test_a_task_exported_by_label_studio_is_read():
    assert from_tasks([EXPORTED]) == [
        ITEM
        | {
            "annotator": "label-studio:3",
            "faithful": None,
            "relevant": None,
            "correct": 0.0,
            "note": "off by one\nsee policy",
            "created_at": dt.datetime(2026, 11, 28, 9, 15, 2, 481516, tzinfo=UTC),
        }
    ]
    # completed_by as the older dict form: its email names the annotator.
    older = copy.deepcopy(EXPORTED)
    older["annotations"][0]["completed_by"] = {"id": 3, "email": "dee@example.com", "first_name": ""}
    assert from_tasks([older])[0]["annotator"] == "dee@example.com"


def _broken(change) -> dict:
    task = copy.deepcopy(EXPORTED)
    change(task)
    return task


def _set_choice(task: dict, choice: object) -> None:
    task["annotations"][0]["result"][0]["value"]["choices"] = choice


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: _set_choice(t, ["maybe"]),
            "task 1031, annotation 0: correct choice 'maybe' is not one of",
        ),
        (
            lambda t: _set_choice(t, ["yes", "no"]),
            "task 1031, annotation 0: correct needs exactly one choice",
        ),
        (lambda t: t["data"].pop("item_id"), "task 1031: data.item_id is missing"),
        (lambda t: t["data"].update(question=None), "task 1031: data.question must be text"),
        (lambda t: t.pop("data"), "task 1031: no data object"),
        (lambda t: t["annotations"][0].update(completed_by=None), "completed_by names no annotator"),
        (
            lambda t: t["annotations"][0].update(created_at="yesterday"),
            "created_at 'yesterday' is not an ISO",
        ),
        (
            lambda t: t["annotations"][0]["result"][0].update(from_name="mood"),
            "result from 'mood' is not one of",
        ),
        (lambda t: t["annotations"][0].update(result={}), "task 1031, annotation 0: result is not a list"),
    ],
)
def test_malformed_tasks_are_refused_naming_the_task(change, message):
    with pytest.raises(ValueError, match=message):
        from_tasks([_broken(change)])


def test_bad_rows_are_refused_on_export():
    with pytest.raises(ValueError, match=r"row 0 \(item 41\): faithful is 2.0"):
        to_tasks([ROWS[0] | {"faithful": 2.0}])
    with pytest.raises(ValueError, match="created_at must be a timezone-aware datetime"):
        to_tasks([ROWS[0] | {"created_at": dt.datetime(2026, 11, 29)}])
    with pytest.raises(ValueError, match="row 1 .item 41.: the item's texts differ"):
        to_tasks([ROWS[0], ROWS[1] | {"answer": "changed"}])
    with pytest.raises(ValueError, match="missing question; unknown mood"):
        to_tasks([{k: v for k, v in ROWS[0].items() if k != "question"} | {"mood": 1}])
    with pytest.raises(ValueError, match="labels without an annotator"):
        to_tasks([ROWS[2] | {"faithful": 1.0}])
    with pytest.raises(ValueError, match="a JSON list of task objects"):
        from_tasks({"data": {}})
