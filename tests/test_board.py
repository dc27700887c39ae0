"""`ragline status --html`: the on-call board, rendered from a real materialized project (runs in the
Postgres-backed Dagster instance) and loaded from disk in headless Chromium.

Chromium is a system package. Without it the browser test skips, unless RAGLINE_REQUIRE_BROWSER=1
(set by .ci/run, which installs it): then it fails."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest

from ragline.cli import main
from ragline.config import ConfigError
from ragline.monitoring.board import dagster_url, render_board
from tests.conftest import EXAMPLES, REPO, write_project

REQUIRE_BROWSER_ENV = "RAGLINE_REQUIRE_BROWSER"
SHOTS = os.environ.get("RAGLINE_BOARD_SHOTS")  # a folder to keep the page and its screenshot in
HANDBOOK = ["benefits.md", "paid-time-off.md", "meeting-norms.md", "expenses-and-travel.md"]
# Four team pages that share most of their text: the boiler source fails its duplicate-share check.
BOILERPLATE = "\n\n".join(
    f"## Section {n}\n\nThis page is internal to Tidewater Analytics. Pages are reviewed every quarter "
    f"and archived after two years without changes; ask in #people-ops for help with section {n}."
    for n in range(3)
)
DAGSTER_ENV = ("RAGLINE_CONFIG", "DAGSTER_HOME", "DAGSTER_PG_URL", "RAGLINE_DAGSTER_STORAGE")


@pytest.fixture
def browser() -> str:
    """The browser, or a skip (a fail under RAGLINE_REQUIRE_BROWSER=1) naming what is missing;
    asked first, before the project is materialized."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 and {message}")
        pytest.skip(message)
    return path


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    done = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Elements(HTMLParser):
    """Every element of a DOM with a data-* attribute, and the text inside each."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []
        self.open: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "text": "", **{k: v or "" for k, v in attrs}}
        if any(k.startswith("data-") for k, _ in attrs):
            self.found.append(element)
        if tag not in ("meta", "link", "br", "img", "input"):
            self.open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _tag, element in self.open:
            element["text"] += data

    def where(self, **attrs: str) -> list[dict[str, str]]:
        return [e for e in self.found if all(e.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def age_run(url: str, asset: str, partition: str, hours: float) -> None:
    """Move the run that last materialized an asset partition `hours` back in the Dagster instance
    (its record and every event of it), as if no run had come since: its partitions go stale
    without waiting for them."""
    seconds = hours * 3600
    with psycopg.connect(url) as conn:
        [run_id] = conn.execute(
            "SELECT run_id FROM event_logs WHERE id = (SELECT max(id) FROM event_logs WHERE "
            "dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s AND partition = %s)",
            (json.dumps([asset]), partition),
        ).fetchone()
        events = conn.execute(
            """
            UPDATE event_logs
            SET timestamp = timestamp - make_interval(secs => %(s)s),
                event = jsonb_set(event::jsonb, '{timestamp}',
                                  to_jsonb((event::jsonb ->> 'timestamp')::float8 - %(s)s))::text
            WHERE run_id = %(run)s
            """,
            {"s": seconds, "run": run_id},
        ).rowcount
        runs = conn.execute(
            """
            UPDATE runs
            SET create_timestamp = create_timestamp - make_interval(secs => %(s)s),
                update_timestamp = update_timestamp - make_interval(secs => %(s)s),
                start_time = start_time - %(s)s, end_time = end_time - %(s)s
            WHERE run_id = %(run)s
            """,
            {"s": seconds, "run": run_id},
        ).rowcount
    assert events > 10 and runs == 1


@pytest.fixture
def board_project(tmp_path, db_url, monkeypatch):
    """A two-source project materialized through `ragline materialize` into the Postgres-backed
    instance: handbook (good, with golden questions) and boiler (fails a blocking check)."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    for name in DAGSTER_ENV:  # `ragline` exports these into its own environment; undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    (tmp_path / "handbook").mkdir()
    for name in HANDBOOK:
        shutil.copy(EXAMPLES / "handbook" / name, tmp_path / "handbook" / name)
    (tmp_path / "boiler").mkdir()
    for team in ("payments", "search", "mobile", "platform"):
        (tmp_path / "boiler" / f"{team}.md").write_text(f"# Team {team}\n\n{BOILERPLATE}\n")
    wanted = {f"handbook:{n}" for n in HANDBOOK}
    golden = [
        line
        for line in (REPO / "examples/golden/questions.jsonl").read_text().splitlines()
        if set(json.loads(line)["relevant_documents"]) <= wanted
    ]
    (tmp_path / "golden.jsonl").write_text("\n".join(golden) + "\n")
    markdown = {"strategy": "markdown"}
    # Yesterday, then today: today's scores have a baseline day for the regression gate's interval.
    # The daily partitions start at the configured date (else at the first day materialized: today).
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    settings = write_project(
        tmp_path,
        [{"name": n, "root": n, "chunking": markdown} for n in ("handbook", "boiler")],
        eval_sets=[{"name": "golden", "kind": "golden", "path": "golden.jsonl"}],
        variants=[{"name": "dense", "strategy": "dense"}, {"name": "hybrid", "strategy": "hybrid"}],
        evaluation={"k": 3, "control": "hybrid", "bootstrap_samples": 500, "start_date": yesterday},
    )
    for day in (["--date", yesterday], []):
        assert main(["--config", str(settings.path), "materialize", *day]) == 1  # boiler's check fails
    return settings, yesterday


def test_the_board_shows_a_failing_check_and_a_stale_source_in_chromium(
    browser, board_project, db_url, tmp_path, capsys
):
    capsys.readouterr()
    age_run(db_url, "raw_documents", "handbook", hours=75)
    page = tmp_path / "board.html"
    settings, yesterday = board_project
    config = ["--config", str(settings.path)]
    assert main([*config, "status", "--html", str(page), "--dagster-url", "http://ui.example:3105/"]) == 1
    out = capsys.readouterr().out
    assert (
        out.startswith("NOT healthy: 1 failing, 7 stale, 2 never materialized, 1 failed run")
        and str(page) in out
    )

    shot = tmp_path / "board.png"
    if SHOTS:  # keep the page and its screenshot for a person to look at
        shutil.copy(page, Path(SHOTS) / "board.html")
        shot = Path(SHOTS) / "board.png"
    headless(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1500", page.as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 20_000
    dom = Elements()
    dom.feed(headless(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout)

    [summary] = dom.where(tag="h1")
    assert summary["data-level"] == "bad" and summary["text"] == out.splitlines()[0]
    [chunks] = dom.where(data_asset="chunks", data_partition="boiler")
    assert chunks["data-state"] == "failing" and chunks["class"] == "bad"
    [failed] = dom.where(data_check="duplicate_chunk_share_within_limit", data_state="failed")
    assert failed["href"] == (
        "http://ui.example:3105/assets/chunks?view=checks&checkDetail=duplicate_chunk_share_within_limit"
    )
    # The source whose last run is 75 hours old: each of its four assets is stale, none is green.
    for asset in ("raw_documents", "chunks", "embeddings", "serving_chunks"):
        [row] = dom.where(data_asset=asset, data_partition="handbook")
        assert (row["data-state"], row["class"]) == ("stale", "bad") and "3 d 3 h ago" in row["text"]
    # Blocked by the failed check: boiler's embeddings never materialized; its run failed there.
    [blocked] = dom.where(data_asset="embeddings", data_partition="boiler")
    assert blocked["data-state"] == "never materialized" and "failure" in blocked["text"]
    [upstream] = dom.where(data_asset="raw_documents", data_partition="boiler")
    assert upstream["data-state"] == "ok" and "failed after materializing" in upstream["text"]
    # The index is new, but it rests on the late source: stale too; the daily scores are fresh.
    [index] = dom.where(data_asset="search_index")
    assert (index["data-state"], index["class"]) == ("stale", "bad")
    [fresh] = dom.where(data_asset="retrieval_scores")
    assert (fresh["data-state"], fresh["class"]) == ("ok", "good") and "fresh" in fresh["text"]
    attention = [e["text"] for e in dom.where(tag="li", data_level="bad")]
    assert attention[0].startswith("chunks [boiler]: check duplicate_chunk_share_within_limit failed")
    for assets in (
        "raw_documents, chunks, embeddings, serving_chunks [handbook]",
        "search_index, eval_set, variant_corpora",
    ):
        [line] = [
            t for t in attention if t.startswith(f"{assets}: stale: raw_documents[handbook] scanned 75")
        ]
        assert line.endswith("h ago, past the 50 h window")
    # Scores, and the A/B of dense against the hybrid control with its interval; the day's usage.
    assert {e["data-variant"] for e in dom.where(tag="tr", data_eval_set="golden")} == {"dense", "hybrid"}
    for gate in dom.where(tag="tr", data_eval_set="golden"):
        assert f"vs {yesterday}" in gate["text"] and "no significant difference" in gate["text"]
    [ab] = dom.where(data_ab="dense")
    assert "hybrid" in ab["text"] and "[" in ab["text"]
    [llm] = dom.where(data_llm="recorded")  # the local model's batches, free: $0
    assert "Model calls" in llm["text"] and "$0.0000" in llm["text"]


def test_outside_text_is_escaped_and_the_ui_url_must_be_http():
    hostile = '<script>alert(1)</script>\x1b[2J"'
    report = {
        "generated_at": "2026-11-29T12:00:00+00:00",
        "config": hostile,
        "freshness_window": {"warn_hours": 26, "fail_hours": 50},
        "assets": [
            {
                "asset": "raw_documents",
                "partition": hostile,
                "materialized_at": "2026-11-29T11:00:00+00:00",
                "run_id": "../x?y=<b>",
                "metadata": {},
                "freshness": "pass",
                "rows": 3,
                "checks": {"documents_have_text": "failed"},
                "check_notes": {"documents_have_text": hostile},
                "last_run": {
                    "run_id": "../x?y=<b>",
                    "job": hostile,
                    "status": "FAILURE",
                    "started_at": "2026-11-29T11:00:00+00:00",
                },
            }
        ],
        "failing_checks": ["raw_documents.documents_have_text"],
        "stale": [],
        "quality": {
            "drift": [
                {
                    "partition": "2026-11-29",
                    "scope": "corpus_vs_baseline",
                    "subject": hostile,
                    "p_value": 0.001,
                    "effect": 0.2,
                    "n_baseline": 500,
                    "n_current": 500,
                    "significant": True,
                    "alarm": True,
                    "reason": hostile,
                }
            ]
        },
    }
    page = render_board(report, base_url="http://127.0.0.1:3000")
    assert "<script" not in page and "\x1b" not in page and "\\x1b[2J" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "/runs/..%2Fx%3Fy%3D%3Cb%3E" in page  # the id is one escaped path segment
    assert "/assets/raw_documents?view=partitions&amp;partition=%3Cscript%3E" in page
    for bad in ("javascript:alert(1)", "file:///etc/passwd", "http://"):
        with pytest.raises(ConfigError, match="must be http"):
            dagster_url(bad)
    with pytest.raises(ConfigError, match="must not carry credentials") as error:
        dagster_url("https://oncall:hunter2secret@dagster.example")
    assert "hunter2secret" not in str(error.value)


def _report(**row: object) -> dict:
    """A status report of one asset partition (as orchestration.commands.status shapes it)."""
    asset = {
        "asset": "chunks",
        "partition": "docs",
        "materialized_at": "2026-11-29T11:00:00+00:00",
        "run_id": "r1",
        "rows": 3,
        "metadata": {},
        "freshness": "pass",
        "checks": {"chunk_spans_cover_document": "passed"},
        "check_notes": {},
        "last_run": {"run_id": "r1", "status": "SUCCESS", "started_at": "2026-11-29T11:00:00+00:00"},
        **row,
    }
    checks = [f"chunks[docs].{c}" for c, s in asset["checks"].items()]

    def having(state: str) -> list[str]:
        return [c for c, s in zip(checks, asset["checks"].values(), strict=True) if s == state]

    return {
        "generated_at": "2026-11-29T12:00:00+00:00",
        "freshness_window": {"warn_hours": 26, "fail_hours": 50},
        "assets": [asset],
        "failing_checks": having("failed"),
        "untested_checks": having("not tested"),
        "warning_checks": having("warn"),
        "checks_not_run": having("not run") if asset["materialized_at"] else [],
        "stale": ["chunks[docs]"] if asset["freshness"] == "fail" else [],
        "never_materialized": [] if asset["materialized_at"] else ["chunks[docs]"],
    }


NEVER = {"materialized_at": None, "run_id": None, "freshness": "unknown", "checks": {"c": "not run"}}


@pytest.mark.parametrize(
    ("row", "headline", "state"),
    [
        ({}, ("good", "healthy: 1 asset partitions fresh, 1 checks passed"), ("good", "ok")),
        (
            {"checks": {"c": "not tested"}},
            ("warn", "healthy, with caveats: 1 not tested"),
            ("untested", "not tested"),
        ),
        (
            {"checks": {"c": "not run"}},
            ("bad", "NOT healthy: 1 check not run"),  # as `ragline status` judges it (exit 1)
            ("neutral", "checks not run"),
        ),
        ({"freshness": "warn"}, ("warn", "healthy, with caveats: 1 late"), ("warn", "late")),
        ({"freshness": "fail"}, ("bad", "NOT healthy: 1 stale"), ("bad", "stale")),
        (NEVER, ("bad", "NOT healthy: 1 never materialized"), ("bad", "never materialized")),
    ],
)
def test_only_a_pass_on_fresh_data_is_green(row, headline, state):
    page = render_board(_report(**row))
    level, text = headline
    assert f'<h1 id="summary" class="{level}" data-level="{level}">{text}</h1>' in page
    level, label = state
    assert f'<tr class="{level}" data-asset="chunks" data-partition="docs" data-state="{label}">' in page
    assert ('class="chip good"' in page) == ("checks" not in row)  # only a passed check's chip is green


def test_a_significant_context_row_is_not_reported_as_a_near_alarm():
    """Queries against passages are nearly always "significant"; that row never alarms, so neither the
    board nor `ragline status` may read it as a shift just under drift.min_new_share."""
    from ragline.monitoring.board import drift_verdict

    row = {"alarm": False, "p_value": 0.005, "significant": True, "effect": 1.0, "scope": "queries_vs_corpus"}
    assert drift_verdict({**row, "alarming": False}) == ("context only (never alarms)", "good")
    near = {**row, "scope": "corpus_vs_baseline", "effect": 0.03, "alarming": True}
    assert drift_verdict(near) == ("significant, new share below drift.min_new_share", "warn")
