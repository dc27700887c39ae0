"""Human evaluation: the annotation queue, labels from the web page (through headless Chromium),
the terminal and Label Studio, agreement, calibration and promotion into a golden set.

The answer_results / answer_metric_results rows are the queue's input contract; the tests write
them directly, as the answer_scores asset would."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import io
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ragline.cli import main
from ragline.config import AnnotationSettings, ConfigError, Settings
from ragline.evaluation import annotation
from ragline.evaluation.agreement import cohen_kappa, krippendorff_alpha, spearman
from ragline.evaluation.eval_sets import load_golden
from ragline.serving.app import create_app
from ragline.serving.keys import create_key
from ragline.storage.db import Database
from tests.conftest import drop_database, fresh_database, quality_board, write_project
from tests.test_board import browser  # noqa: F401  (the fixture: chromium, or a skip naming why)
from tests.test_serving import serving

DAY = dt.date(2026, 11, 20)
JUDGE = ("faithfulness", "relevance", "context_precision", "context_recall", "correctness")
SIMILARITY = ("exact_match", "token_f1", "rouge_l", "embedding_cosine", "bertscore_f1")
CONTEXT = [
    {"number": 1, "chunk_id": "c1", "document": "handbook:paid-time-off.md", "text": "25 days from year 3."},
    {"number": 2, "chunk_id": "c2", "document": "handbook:benefits.md", "text": "Dental <b>cover</b>."},
]


def add_answer(
    conn: psycopg.Connection,
    day: dt.date,
    qid: str,
    *,
    answer: str = "25 days [1].",
    judge: dict[str, tuple[float | None, float | None, float | None, int]] | None = None,
    similarity: dict[str, float] | None = None,
    eval_set: str = "golden",
    variant: str = "default",
) -> None:
    """One answer_results row and its metric rows. judge: metric -> (mean, low, high, unmeasured);
    a metric not given is a confident 0.8 (interval 0.75-0.85); similarity metrics default to 0.8."""
    conn.execute(
        "INSERT INTO ragline.answer_results (partition, eval_set, variant, question_id, question_hash, "
        "question, reference, answer, abstained, context_chunk_ids, context) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, false, %s, %s)",
        (
            day,
            eval_set,
            variant,
            qid,
            f"h-{qid}",
            f"Question {qid}?",
            f"Reference of {qid}.",
            answer,
            ["c1", "c2"],
            Jsonb(CONTEXT),
        ),
    )
    judged = {m: (0.8, 0.75, 0.85, 0) for m in JUDGE} | (judge or {})
    rows = [(m, "judge", *judged[m]) for m in JUDGE]
    rows += [
        (m, "similarity", v, None, None, 0)
        for m, v in ({m: 0.8 for m in SIMILARITY} | (similarity or {})).items()
    ]
    for metric, kind, mean, low, high, unmeasured in rows:
        conn.execute(
            "INSERT INTO ragline.answer_metric_results (partition, eval_set, variant, question_id, metric, "
            "kind, mean, low, high, unmeasured) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (day, eval_set, variant, qid, metric, kind, mean, low, high, unmeasured),
        )


def queue_day(conn: psycopg.Connection, day: dt.date, calm: int = 6) -> None:
    """A day of answers: q1 a wide judge interval, q2 an unmeasured sample, q3 the judge says correct
    while token F1 says not; the calm ones need nobody."""
    add_answer(conn, day, "q1", judge={"faithfulness": (0.5, 0.1, 0.9, 0)})
    add_answer(conn, day, "q2", judge={"relevance": (0.7, 0.7, 0.7, 1)})
    add_answer(conn, day, "q3", judge={"correctness": (0.95, 0.9, 1.0, 0)}, similarity={"token_f1": 0.1})
    for n in range(calm):
        add_answer(conn, day, f"c{n}")


def project(tmp_path: Path) -> Settings:
    (tmp_path / "docs").mkdir(exist_ok=True)
    return write_project(tmp_path, [{"name": "docs", "root": "docs"}], annotation={"queue_size": 5})


def stored_labels(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT i.question, i.answer, l.annotator, l.faithful, l.relevant, l.correct, l.note, l.source, "
            "l.created_at FROM ragline.human_labels l JOIN ragline.annotation_items i USING (item_id) "
            "ORDER BY i.question, l.annotator"
        ).fetchall()


def test_the_queue_picks_low_confidence_disagreement_and_random_answers_once(db_url):
    settings = AnnotationSettings(queue_size=10, random_count=2, seed=7)
    with psycopg.connect(db_url, autocommit=True) as conn:
        queue_day(conn, DAY)
        items = annotation.select_queue(conn, DAY, settings)
        reasons = {i.question_id: i.reasons for i in items}
        assert "low_confidence" in reasons["q1"] and "low_confidence" in reasons["q2"]
        assert "disagreement" in reasons["q3"]
        assert sum("random" in r for r in reasons.values()) == 2
        assert len(items) == len(reasons) <= 5  # the calm answers come only as the random control
        # A rerun of the day draws the same control sample and queues nothing twice.
        assert [i.question_id for i in annotation.select_queue(conn, DAY, settings)] == [
            i.question_id for i in items
        ]
        stored = annotation.store_queue(conn, items)
        assert len(stored) == len(items)
        assert annotation.select_queue(conn, DAY, settings) == []
        assert annotation.store_queue(conn, items) == []  # queued meanwhile: skipped, not duplicated
        q1 = next(i for i in items if i.question_id == "q1")
        assert q1.judge["faithfulness"] == {"mean": 0.5, "low": 0.1, "high": 0.9, "unmeasured": 0}
        assert q1.context == CONTEXT and q1.reference == "Reference of q1."
        # The next day answers the same again, except q1: only q1's new answer is queued from it.
        next_day = DAY + dt.timedelta(days=1)
        queue_day(conn, next_day)
        conn.execute(
            "UPDATE ragline.answer_results SET answer = 'Twenty days.' WHERE partition = %s "
            "AND question_id = 'q1'",
            (next_day,),
        )
        again = annotation.select_queue(conn, next_day, AnnotationSettings(queue_size=10, random_count=0))
        assert [(i.question_id, i.reasons) for i in again] == [("q1", ("low_confidence",))]
        # The day's cap counts what is queued already.
        # The day's cap counts what is queued already (another seed would draw other answers).
        assert annotation.select_queue(conn, DAY, AnnotationSettings(queue_size=len(items), seed=1)) == []
        assert (
            len(annotation.select_queue(conn, DAY, AnnotationSettings(queue_size=len(items) + 1, seed=1)))
            == 1
        )
        assert annotation.status_counts(conn) == {"open": len(items), "labelled": 0, "promoted": 0}
        # Its own copy: rescoring the partition does not change what people label.
        conn.execute("DELETE FROM ragline.answer_results WHERE partition = %s", (DAY,))
        assert len(annotation.items_for(conn, "anyone")) == len(items)


def test_annotation_config_is_checked(tmp_path):
    (tmp_path / "docs").mkdir()
    sources = [{"name": "docs", "root": "docs"}]
    settings = write_project(tmp_path, sources)
    assert (
        settings.annotation.queue_size == 20
        and settings.annotation.golden_path == tmp_path / "golden/human.jsonl"
    )
    for bad, message in (
        ({"random_share": 0.1, "random_count": 2}, "not both"),
        ({"queue_size": 0}, "queue_size"),
        ({"disagreement": 2}, "disagreement"),
        ({"colour": "red"}, "unknown keys"),
    ):
        with pytest.raises(ConfigError, match=message):
            write_project(tmp_path, sources, annotation=bad)


def test_labels_are_checked_and_a_relabel_replaces_the_label(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        queue_day(conn, DAY, calm=0)
        [(item_id, _), *_] = annotation.store_queue(
            conn, annotation.select_queue(conn, DAY, AnnotationSettings())
        )
        for bad, message in (
            ({"faithful": "maybe"}, "faithful: expected yes, partly or no"),
            ({"correct": 0.7}, "correct: expected"),
            ({}, "nothing to save"),
            ({"faithful": "yes", "note": "a\x00b"}, "without NUL"),  # Postgres text holds none
        ):
            with pytest.raises(annotation.AnnotationError, match=message):
                annotation.make_label(item_id, "ann", **bad)
        with pytest.raises(annotation.AnnotationError, match="annotator"):
            annotation.make_label(item_id, "a\x1b[2Jb", faithful="yes")
        with pytest.raises(annotation.AnnotationError, match="item_id must be"):
            annotation.make_label(2**63, "ann", faithful="yes")  # past bigint
        with pytest.raises(annotation.AnnotationError, match="no annotation item 999"):
            annotation.save_label(conn, annotation.make_label(999, "ann", faithful="yes"))
        first = annotation.save_label(conn, annotation.make_label(item_id, "ann", faithful="yes", note="ok"))
        again = annotation.save_label(
            conn, annotation.make_label(item_id, "ann", faithful="no", correct="partly")
        )
        assert first == again
    [label] = stored_labels(db_url)
    assert (label["faithful"], label["relevant"], label["correct"], label["note"]) == (0.0, None, 0.5, "")


def test_labelling_in_the_terminal_keeps_what_was_saved_at_the_end_of_input(
    db_url, tmp_path, monkeypatch, capsys
):
    settings = project(tmp_path)
    with psycopg.connect(db_url, autocommit=True) as conn:
        queue_day(conn, DAY, calm=0)
        annotation.store_queue(conn, annotation.select_queue(conn, DAY, AnnotationSettings(random_count=0)))
    with psycopg.connect(db_url) as conn:
        order = [i["question"] for i in annotation.items_for(conn, "cli-person")]
    # item 1: yes, partly, no and a note; item 2: a typo asked again, then yes and skip, skip;
    # then the input ends in the middle of item 3.
    monkeypatch.setattr("sys.stdin", io.StringIO("y\np\nn\nfine\nx\ny\n\n\n\nr\n"))
    assert main(["--config", str(settings.path), "label", "--annotator", "cli-person"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 open" in out and "'x': y yes" in out and "reference: Reference of q" in out
    assert "stopped; 2 label(s) saved" in out
    labels = {x["question"]: x for x in stored_labels(db_url)}
    assert [(x["faithful"], x["relevant"], x["correct"], x["note"]) for x in map(labels.get, order[:2])] == [
        (1.0, 0.5, 0.0, "fine"),
        (1.0, None, None, ""),
    ]
    assert order[2] not in labels
    # Again: the item left is skipped (s), and the loop ends instead of asking it again.
    monkeypatch.setattr("sys.stdin", io.StringIO("s\n"))
    assert main(["--config", str(settings.path), "label", "--annotator", "cli-person"]) == 0
    assert (
        "1 of 1 open" in (out := capsys.readouterr().out) and "nothing left to label; 0 label(s) saved" in out
    )
    labels = list(labels.values())
    assert {x["annotator"] for x in labels} == {"cli-person"} and {x["source"] for x in labels} == {"cli"}
    # Bad input: a message and exit code 2.
    assert main(["--config", str(settings.path), "label", "promote", "--item", "999"]) == 2
    assert (
        main(["--config", str(settings.path), "label", "import", "--label-studio", str(tmp_path / "no.json")])
        == 2
    )
    (tmp_path / "bad.json").write_text("{not json")
    assert (
        main(
            ["--config", str(settings.path), "label", "import", "--label-studio", str(tmp_path / "bad.json")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no annotation item 999" in err and "cannot read" in err and "not a JSON file" in err


def label_items(
    conn: psycopg.Connection,
    verdicts: dict[str, list[tuple[str, float | None, float | None, float | None]]],
    answers: dict[str, str] | None = None,
) -> dict[str, int]:
    """Queue one answer per question id and label it: qid -> [(annotator, faithful, relevant, correct)]
    (answers: qid -> its answer, else "25 days [1].")."""
    for n, qid in enumerate(verdicts):
        judge = {"correctness": (n / max(len(verdicts) - 1, 1), 0.0, 1.0, 0)}
        add_answer(conn, DAY, qid, answer=(answers or {}).get(qid, "25 days [1]."), judge=judge)
    items = annotation.store_queue(
        conn, annotation.select_queue(conn, DAY, AnnotationSettings(queue_size=50))
    )
    ids = {item.question_id: item_id for item_id, item in items}
    for qid, labels in verdicts.items():
        for who, f, r, c in labels:
            label = annotation.Label(ids[qid], who, f, r, c, source="cli")
            annotation.save_label(conn, label)
    return ids


def test_agreement_between_annotators_and_with_the_judge_is_computed_stored_and_shown_on_call(
    db_url, tmp_path
):
    people = {
        "a1": [("ann", 1.0, 1.0, 0.0), ("bob", 1.0, 0.5, 0.0)],
        "a2": [("ann", 0.5, 1.0, 0.0), ("bob", 0.5, 1.0, 0.5)],
        "a3": [("ann", 0.0, 1.0, 1.0), ("bob", 0.0, 0.0, 1.0)],
        "a4": [("ann", 1.0, None, 1.0), ("bob", 0.0, 1.0, 1.0)],
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        label_items(conn, people)
        rows = annotation.agreement(conn, DAY + dt.timedelta(days=30))
        before = annotation.agreement(conn, DAY - dt.timedelta(days=1))  # no label yet then
        stored = conn.execute(
            "SELECT partition, scope, label, statistic, value, n FROM ragline.annotation_agreement"
        ).fetchall()
    got = {(r.scope, r.label, r.statistic): (r.value, r.n) for r in rows}
    ann = {q: v[0] for q, v in people.items()}
    bob = {q: v[1] for q, v in people.items()}
    faithful = [[ann[q][1], bob[q][1]] for q in people]
    assert got["annotators", "faithful", "krippendorff_alpha"] == (
        pytest.approx(krippendorff_alpha(faithful, "ordinal")),
        4,
    )
    bins = {1.0: "yes", 0.5: "partly", 0.0: "no"}
    assert got["annotators", "correct", "cohen_kappa"] == (
        pytest.approx(cohen_kappa([bins[ann[q][3]] for q in people], [bins[bob[q][3]] for q in people])),
        4,
    )
    assert got["annotators", "relevant", "krippendorff_alpha"][1] == 3  # a4: one relevance label only
    # The judge's correctness means are 0, 1/3, 2/3, 1: bins no, no (<= 1/3), yes, yes; the
    # people's means 0, 0.25, 1, 1: no, no, yes, yes.
    judge = [0.0, 1 / 3, 2 / 3, 1.0]
    mean = [0.0, 0.25, 1.0, 1.0]
    assert got["judge", "correct", "bin_match"] == (1.0, 4)
    assert got["judge", "correct", "cohen_kappa"] == (1.0, 4)
    assert got["judge", "correct", "spearman"] == (pytest.approx(spearman(judge, mean)), 4)
    [calibration] = [c for c in annotation.calibration(rows) if c.metric == "correctness"]
    assert (calibration.n, calibration.bin_match, calibration.kappa) == (4, 1.0, 1.0)
    with psycopg.connect(db_url) as conn:
        summary = annotation.agreement_summary(conn)  # for status and the board: the latest day
    assert len(summary) == 3 and summary[2].startswith(
        f"correctness vs people ({DAY + dt.timedelta(days=30)}): "
    )
    assert "kappa 1.00" in summary[2] and "bins match 1.00 (n=4)" in summary[2]
    # Both days stored, the earlier one with nothing to compute from.
    assert len(stored) == len(rows) + len(before)
    assert all(r.value is None and r.n == 0 for r in before)
    # On call: `ragline status` and the board show these lines under the day's answer scores.
    from orchestration.commands import _format_answers, quality_summary

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ragline.answer_scores (partition, eval_set, variant, metric, kind, questions, "
            "measured, unmeasured, mean, low, high) VALUES (%s, 'golden', 'default', 'correctness', "
            "'judge', 4, 4, 0, 0.5, 0.2, 0.8)",
            (DAY + dt.timedelta(days=30),),
        )
    quality = quality_summary(project(tmp_path))
    assert quality["judge_agreement"] == summary
    status = _format_answers(quality)
    assert [line for line in status if "judge agreement" in line] == [
        f"  judge agreement: {s}" for s in summary
    ]
    page = quality_board(quality)
    assert "<h3>Judge agreement</h3>" in page and all(html.escape(s) in page for s in summary)


def test_label_studio_export_then_import_into_a_fresh_database_gives_the_same_labels(
    db_url, server_url, tmp_path, monkeypatch
):
    settings = project(tmp_path)
    with psycopg.connect(db_url, autocommit=True) as conn:
        label_items(
            conn,
            {
                "l1": [("ann", 1.0, 0.5, None), ("bob", 0.0, 1.0, 1.0)],
                "l2": [("ann", None, None, 0.5)],
                "l3": [],
            },
        )
        conn.execute(
            "UPDATE ragline.human_labels SET note = 'cites [1] \"twice\"\nsee §2' WHERE annotator = 'bob'"
        )
    exported = tmp_path / "tasks.json"
    assert main(["--config", str(settings.path), "label", "export", "--label-studio", str(exported)]) == 0
    tasks = json.loads(exported.read_text())
    assert len(tasks) == 3 and {"question", "answer", "context", "reference", "item_id"} <= set(
        tasks[0]["data"]
    )
    assert (tmp_path / "tasks.json.config.xml").read_text().startswith("<View")
    name, other = fresh_database(server_url)
    try:
        monkeypatch.setenv("DATABASE_URL", other)
        for _ in range(2):  # importing twice changes nothing
            assert (
                main(["--config", str(settings.path), "label", "import", "--label-studio", str(exported)])
                == 0
            )
        imported, original = stored_labels(other), stored_labels(db_url)
        assert {x.pop("source") for x in imported} == {"label_studio"} and len(original) == 3
        assert imported == [{k: v for k, v in x.items() if k != "source"} for x in original]
        with (
            psycopg.connect(other, row_factory=dict_row) as a,
            psycopg.connect(db_url, row_factory=dict_row) as b,
        ):
            columns = (
                "partition, eval_set, variant, question_id, question_hash, answer_hash, question, answer, "
                "context, judge, similarity"
            )
            sql = f"SELECT {columns} FROM ragline.annotation_items ORDER BY question_id"
            assert a.execute(sql).fetchall() == b.execute(sql).fetchall()
    finally:
        drop_database(server_url, name)


def test_promotion_writes_a_golden_line_once_and_only_for_a_cited_answer(db_url, tmp_path, capsys):
    golden = tmp_path / "golden" / "human.jsonl"
    settings = project(tmp_path)
    approve = [("ann", 1.0, 1.0, 1.0)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = label_items(
            conn,
            {
                "p1": [("ann", 1.0, 1.0, 1.0), ("bob", 0.5, 1.0, 1.0)],
                "p2": [("ann", 1.0, 1.0, 0.5)],
                "p3": approve,  # an abstention people called correct
                "p4": approve,  # a correct answer that cites nothing
                "p5": approve,  # cites passage 2 only
            },
            answers={"p3": "", "p4": "25 days.", "p5": "Dental is covered [2]."},
        )
        with pytest.raises(
            annotation.AnnotationError, match=r"item \d+: not every annotator judged it correct"
        ):
            annotation.promote(conn, golden, [ids["p2"], ids["p1"]])
        with pytest.raises(
            annotation.AnnotationError, match=r"item \d+: its answer is empty \(an abstention\)"
        ):
            annotation.promote(conn, golden, [ids["p3"]])
        assert not golden.exists()  # all named items or none
    capsys.readouterr()
    promote = ["--config", str(settings.path), "label", "promote", "--path", str(golden), "--item"]
    assert main([*promote, str(ids["p4"])]) == 2
    assert f"item {ids['p4']}: its answer cites no document of its context" in capsys.readouterr().err
    assert not golden.exists()
    with psycopg.connect(db_url, autocommit=True) as conn:
        first = annotation.promote(conn, golden)
    assert [line["id"] for line in first.written] == [f"human-{ids['p1']}", f"human-{ids['p5']}"]
    assert set(first.skipped) == {ids["p3"], ids["p4"]}
    assert main(promote[:-1]) == 0  # again, all approved items: nothing new, and it says why not
    out = capsys.readouterr().out
    assert out.startswith(f"promoted 0 item(s) to {golden}") and f"not promoted: item {ids['p3']}: its" in out
    with psycopg.connect(db_url) as conn:
        assert annotation.status_counts(conn)["promoted"] == 2
    loaded = load_golden(golden, "human")
    assert loaded.rejected == [] and len(loaded.questions) == 2
    # Each answer's relevant documents are those it cites (not its whole context); markers dropped.
    assert [(q.question, q.answer, q.kind, q.relevant) for q in loaded.questions] == [
        ("Question p1?", "25 days.", "human", {"handbook:paid-time-off.md": 1.0}),
        ("Question p5?", "Dental is covered.", "human", {"handbook:benefits.md": 1.0}),
    ]


CDP_IDS = itertools.count(1)


def cdp(ws: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One Chrome DevTools Protocol call; its result (events on the way are dropped)."""
    call = next(CDP_IDS)
    ws.send(json.dumps({"id": call, "method": method, "params": params or {}}))
    while True:
        message = json.loads(ws.recv(timeout=30))
        if message.get("id") == call:
            assert "error" not in message, message
            return message["result"]


def evaluate(ws: Any, expression: str) -> Any:
    return cdp(ws, "Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get(
        "value"
    )


def wait_for(ws: Any, expression: str) -> Any:
    for _ in range(600):
        value = evaluate(ws, expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"never true in the page: {expression}; status: {evaluate(ws, 'document.body.innerText')}"
    )


def press(ws: Any, key: str) -> None:
    """A real key press through Chromium's input pipeline (keyDown with its text, then keyUp)."""
    code = {"Escape": 27, "Enter": 13}[key] if len(key) > 1 else ord(key.upper())
    down = {"type": "keyDown", "key": key, "windowsVirtualKeyCode": code}
    if len(key) == 1:
        down["text"] = key
    cdp(ws, "Input.dispatchKeyEvent", down)
    cdp(ws, "Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "windowsVirtualKeyCode": code})


@pytest.fixture
def chromium_page(browser, tmp_path) -> Iterator[Any]:  # noqa: F811
    """Headless Chromium with its DevTools port; yields open(url) -> a CDP connection to that page."""
    from websockets.sync.client import connect

    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sockets = contextlib.ExitStack()
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(600):
            if port_file.is_file() and port_file.read_text().strip():
                break
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])

        def open_page(url: str) -> Any:
            [page] = [
                t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"
            ]
            ws = sockets.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
            cdp(ws, "Page.enable")
            cdp(ws, "Page.navigate", {"url": url})
            return ws

        yield open_page
    finally:
        sockets.close()
        process.terminate()
        process.wait(30)


def test_a_label_entered_with_the_keyboard_in_chromium_lands_in_human_labels(db_url, tmp_path, chromium_page):
    settings = project(tmp_path)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_answer(
            conn,
            DAY,
            "w1",
            answer="<img src=x onerror=alert(1)> 25 days [1].",
            judge={"faithfulness": (0.5, 0.0, 1.0, 0)},
        )
        add_answer(conn, DAY, "w2", judge={"relevance": (0.5, 0.0, 1.0, 0)})
        items = annotation.store_queue(
            conn, annotation.select_queue(conn, DAY, AnnotationSettings(random_count=0))
        )
        key = create_key(conn, "reviewer-7").key
    with Database(db_url, max_size=2) as db:
        app = create_app(settings, db, retriever=None)  # type: ignore[arg-type]
        with serving(app) as base:
            page = httpx.get(f"{base}/annotate")
            assert page.status_code == 200 and "script-src 'nonce-" in page.headers["content-security-policy"]
            assert httpx.get(f"{base}/annotate/items").status_code == 401
            bad = httpx.post(
                f"{base}/annotate/labels",
                headers={"Authorization": f"Bearer {key}"},
                json={"item_id": items[0][0], "faithful": "perhaps"},
            )
            assert bad.status_code == 422 and "faithful: expected yes, partly or no" in bad.json()["detail"]
            ws = chromium_page(f"{base}/annotate#key={key}")
            first = wait_for(ws, "document.getElementById('item').dataset.itemId")
            assert int(first) == items[0][0]
            assert wait_for(ws, "document.getElementById('progress').textContent") == "1 of 2 open"
            # The hostile answer is shown as text, not markup.
            assert evaluate(ws, "document.querySelectorAll('#answer img').length") == 0
            assert "<img src=x" in evaluate(ws, "document.getElementById('answer').textContent")
            for key_name in ("1", "w", "z", "/"):
                press(ws, key_name)
            cdp(ws, "Input.insertText", {"text": "reads well"})
            press(ws, "Escape")
            press(ws, "s")
            wait_for(ws, f"document.body.dataset.saved === '{first}'")
            assert wait_for(ws, "document.getElementById('progress').textContent") == "1 of 1 open"
            assert "#key" not in evaluate(ws, "location.href")  # the key left the address bar
    [label] = stored_labels(db_url)
    assert (label["annotator"], label["faithful"], label["relevant"], label["correct"]) == (
        "reviewer-7",
        1.0,
        0.5,
        1.0,
    )
    assert (label["note"], label["source"]) == ("reads well", "web")


def test_with_keys_the_annotator_is_the_keys_name_and_a_name_is_given_only_without_auth(db_url, tmp_path):
    """A key holder cannot write (or replace) another annotator's label by naming them: 403, nothing
    stored; without auth (`ragline serve --no-auth`) the page's name is taken, else `local`."""
    settings = project(tmp_path)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_answer(conn, DAY, "n1", judge={"faithfulness": (0.5, 0.0, 1.0, 0)})
        [(item, _)] = annotation.store_queue(
            conn, annotation.select_queue(conn, DAY, AnnotationSettings(random_count=0))
        )
        key = create_key(conn, "mallory").key
    label = {"item_id": item, "faithful": "no"}
    with Database(db_url, max_size=2) as db:
        with serving(create_app(settings, db, retriever=None)) as base:  # type: ignore[arg-type]
            auth = {"Authorization": f"Bearer {key}"}
            forged = httpx.post(f"{base}/annotate/labels", headers=auth, json=label | {"annotator": "alice"})
            assert forged.status_code == 403 and "ragline serve --no-auth" in forged.json()["detail"]
            peek = httpx.get(f"{base}/annotate/items", headers=auth, params={"annotator": "alice"})
            assert peek.status_code == 403
            assert stored_labels(db_url) == []
            own = httpx.post(f"{base}/annotate/labels", headers=auth, json=label | {"annotator": " mallory "})
            assert own.status_code == 200 and own.json()["annotator"] == "mallory"
        with serving(create_app(settings, db, retriever=None, auth=False)) as base:  # type: ignore[arg-type]
            named = httpx.post(f"{base}/annotate/labels", json=label | {"annotator": "alice"})
            unnamed = httpx.post(f"{base}/annotate/labels", json=label)
            assert (named.status_code, unnamed.status_code) == (200, 200)
            assert httpx.get(f"{base}/annotate/items", params={"annotator": "alice"}).json()["open"] == 0
    assert [x["annotator"] for x in stored_labels(db_url)] == ["alice", "local", "mallory"]


def test_the_annotation_queue_asset_queues_a_day_and_shows_agreement_and_calibration(db_url, tmp_path):
    import dagster as dg

    from assets.annotation import annotation_queue_asset
    from orchestration.partitions import daily_partitions
    from orchestration.resources import RaglineResource
    from tests.conftest import table_rows

    # Today's partition: a day's agreement counts the labels given until that day's end.
    today = dt.datetime.now(dt.UTC).date()
    (tmp_path / "docs").mkdir()
    settings = write_project(
        tmp_path,
        [{"name": "docs", "root": "docs"}],
        evaluation={"start_date": (today - dt.timedelta(days=3)).isoformat()},
        annotation={"random_count": 0},
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        # One answer queued and labelled earlier in the day: the judge said 0.95 (yes), the people's
        # mean is 0.75, a yes too.
        add_answer(
            conn, today, "x1", judge={"correctness": (0.95, 0.9, 1.0, 0)}, similarity={"token_f1": 0.1}
        )
        [(item_id, _)] = annotation.store_queue(
            conn, annotation.select_queue(conn, today, settings.annotation)
        )
        for who, correct in (("ann", 1.0), ("bob", 0.5)):
            annotation.save_label(conn, annotation.Label(item_id, who, None, None, correct, source="cli"))
        queue_day(conn, today)
    asset = annotation_queue_asset(daily_partitions(settings), dg.AutomationCondition.eager())
    resources = {"ragline": RaglineResource(config_path=str(settings.path))}
    result = dg.materialize([asset], resources=resources, partition_key=today.isoformat())
    [mat] = result.asset_materializations_for_node("annotation_queue")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    by_reason = {r["reason"]: r["items"] for r in table_rows(meta["queued_by_reason"])}
    assert by_reason == {"low_confidence": "2", "disagreement": "1", "random": "0"}
    assert meta["queued"] == 3 and (meta["items_open"], meta["items_labelled"]) == (3, 1)
    agreement = {(r["label"], r["between annotators"]): r for r in table_rows(meta["agreement"])}
    assert agreement["correct", "cohen_kappa"]["n"] == "1"
    calibration = {r["judge metric"]: r for r in table_rows(meta["calibration"])}
    assert calibration["correctness"]["n"] == "1" and calibration["correctness"]["bin match"] == "1.0000"
