"""The on-call health board: one self-contained HTML page (inline CSS, no script, no network) from
the report of `ragline status`, with links into the Dagster UI.

Colours are honest: green only for a check that passed, a fresh materialization, a run that
succeeded or a test that found nothing. Stale, never materialized, not tested and not run are never
green."""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ragline.config import ConfigError
from ragline.safe_text import printable, scrub

DAGSTER_URL_ENV = "RAGLINE_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"

# Levels, worst first; each is a CSS class.
BAD, WARN, UNTESTED, NEUTRAL, GOOD = "bad", "warn", "untested", "neutral", "good"
_ORDER = (BAD, WARN, UNTESTED, NEUTRAL, GOOD)
_CHECK_LEVEL = {"failed": BAD, "warn": WARN, "not tested": UNTESTED, "not run": NEUTRAL, "passed": GOOD}
_CHECK_MARK = {BAD: "✗", WARN: "!", UNTESTED: "?", NEUTRAL: "·", GOOD: "✓"}
_RUN_LEVEL = {"SUCCESS": GOOD, "FAILURE": BAD, "CANCELED": WARN, "CANCELING": WARN}
_FRESHNESS = {"pass": ("fresh", GOOD), "warn": ("late", WARN), "fail": ("stale", BAD)}
# "better" is news, not a health problem: only a regression is.
_VERDICT_LEVEL = {"worse": BAD, "no significant difference": GOOD, "better": GOOD}


def dagster_url(explicit: str | None = None) -> str:
    """The Dagster UI's base URL: `explicit`, else $RAGLINE_DAGSTER_URL, else the local default.
    Only http(s): the page puts it into every link."""
    url = (explicit or os.environ.get(DAGSTER_URL_ENV) or DEFAULT_DAGSTER_URL).rstrip("/")
    parts = urlsplit(url)
    shown = printable(scrub(url), 80)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the Dagster UI URL must be http(s)://host[:port], got '{shown}'")
    if parts.username or parts.password:
        # It would be written into every link of a page that gets mailed and attached around.
        raise ConfigError(f"the Dagster UI URL must not carry credentials, got '{shown}'")
    return url


def headline(report: dict[str, Any]) -> tuple[str, str]:
    """(level, text): what on-call reads first, e.g. ("bad", "NOT healthy: 2 failing, 1 stale")."""
    counts = _problem_counts(report)
    bad = [f"{n} {noun}" for n, noun, level in counts if n and level == BAD]
    other = [f"{n} {noun}" for n, noun, level in counts if n and level != BAD]
    if bad:
        return BAD, "NOT healthy: " + ", ".join(bad + other)
    if other:
        return WARN, "healthy, with caveats: " + ", ".join(other)
    checks = sum(len(a["checks"]) for a in report["assets"])
    return GOOD, f"healthy: {len(report['assets'])} asset partitions fresh, {checks} checks passed"


def _problem_counts(report: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(count, noun agreeing with the count, level) of each kind of problem."""
    assets = report["assets"]
    quality = report.get("quality") or {}
    failed_runs = {a["last_run"]["run_id"] for a in assets if _run_status(a) == "FAILURE"}
    counts = [
        (len(report["failing_checks"]), "failing", "failing", BAD),
        (len(report["stale"]), "stale", "stale", BAD),
        (len(report.get("never_materialized", ())), "never materialized", "never materialized", BAD),
        (len(failed_runs), "failed run", "failed runs", BAD),
        # Drift alarms and regressions are also their checks' results: failing (ERROR, counted above)
        # or warnings (severity warn in ragline.yaml), so they do not decide health a second time.
        (sum(bool(d["alarm"]) for d in quality.get("drift") or []), "drift alarm", "drift alarms", WARN),
        (sum(g["verdict"] == "worse" for g in quality.get("gates") or []), "regression", "regressions", WARN),
        (
            sum(a.get("gate_verdict") == "worse" for a in quality.get("answers") or []),
            "answer regression",
            "answer regressions",
            WARN,
        ),
        (sum(a["freshness"] == "warn" for a in assets), "late", "late", WARN),
        (len(report.get("untested_checks", ())), "not tested", "not tested", WARN),
        (len(report.get("warning_checks", ())), "warning", "warnings", WARN),
        (len(report.get("checks_not_run", ())), "check not run", "checks not run", BAD),
    ]
    return [(n, one if n == 1 else many, level) for n, one, many, level in counts]


def render_board(report: dict[str, Any], *, base_url: str = DEFAULT_DAGSTER_URL) -> str:
    """The health board for `report` (orchestration.commands.status) as one HTML document."""
    links = _Links(base_url)
    now = dt.datetime.fromisoformat(report["generated_at"])
    level, text = headline(report)
    quality = report.get("quality") or {}
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # No script, no fetch: the page works from disk, and a value that slipped escaping runs nothing.
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>ragline: {_t(text)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f'<h1 id="summary" class="{level}" data-level="{level}">{_t(text)}</h1>',
            f'<p class="meta">{_t(report.get("config", ""))} · generated {_t(_stamp(now))} · '
            f'<a href="{links.ui()}">Dagster UI</a> · <a href="{links.ui("runs")}">runs</a> · '
            f'<a href="{links.ui("assets")}">asset catalog</a></p>',
            _attention(report, links, now),
            _assets(report, links, now),
            _scores(quality),
            _answers(quality),
            _drift(quality.get("drift") or [], pinned_this_run(report)),
            _usage(quality.get("usage")),
            '<footer class="meta">A snapshot: run <code>ragline status --html FILE</code> again to refresh. '
            "Green: passed, fresh, succeeded. Violet: the check ran but could not test anything. "
            "Grey: nothing is known.</footer>",
            "</body></html>",
        ]
    )


class _Links:
    """Dagster UI addresses, escaped for an HTML attribute."""

    def __init__(self, base_url: str) -> None:
        self.base = dagster_url(base_url)

    def ui(self, path: str = "") -> str:
        return html.escape(f"{self.base}/{path}" if path else self.base)

    def run(self, run_id: str) -> str:
        return html.escape(f"{self.base}/runs/{quote(run_id, safe='')}")

    def asset(self, asset: str, partition: str | None = None, **params: str) -> str:
        path = "/".join(quote(part, safe="") for part in asset.split("/"))
        if partition is not None:
            params = {"view": "partitions", "partition": partition, **params}
        return html.escape(f"{self.base}/assets/{path}" + (f"?{urlencode(params)}" if params else ""))

    def check(self, asset: str, check: str) -> str:
        return self.asset(asset, view="checks", checkDetail=check)


def _attention(report: dict[str, Any], links: _Links, now: dt.datetime) -> str:
    """Every problem as one line with its links, worst first. The assets of one partition with the
    same problem (a source's four assets stale since one run) share a line."""
    items: list[tuple[str, int, str]] = []  # (level, rank within the level, html)
    grouped: dict[tuple[str, int, str | None, str], list[str]] = {}
    for a in report["assets"]:
        for check, state in a["checks"].items():
            level = _CHECK_LEVEL.get(state, BAD)
            # A partition never materialized is one problem, not one per check that did not run.
            if level == GOOD or (level == NEUTRAL and not a["materialized_at"]):
                continue
            link = f'<a href="{links.check(a["asset"], check)}">{_t(check)}</a>'
            note = _note(a.get("check_notes", {}).get(check, ""))
            items.append((level, 0, f"{_where(a)}: check {link} <b>{_t(state)}</b>{note}"))
        run = a.get("last_run")
        problem = None
        if not a["materialized_at"]:
            tried = (
                f", last run {_run_link(run, links)} {_t(run['status'].lower())}" if run else ", never run"
            )
            problem = (BAD, 1, f"<b>never materialized</b>{tried}")
        elif _failed_since(a):
            problem = (BAD, 1, f"last run {_run_link(run, links)} <b>failed</b> before materializing")
        if problem:
            grouped.setdefault((*problem[:2], a["partition"], problem[2]), []).append(a["asset"])
        if a["freshness"] in ("warn", "fail"):
            label, level = _FRESHNESS[a["freshness"]]
            limit = report["freshness_window"]["fail_hours" if level == BAD else "warn_hours"]
            detail = (
                # The problem at its origin: the assets resting on one late source share a line.
                f"<b>{label}</b>: {_t(a['freshness_cause'])}"
                if a.get("freshness_cause")
                else f"<b>{label}</b>, last materialized {_t(_ago(a['materialized_at'], now))} "
                f"({label} after {_hours(limit)})"
            )
            grouped.setdefault((level, 2, a["partition"], detail), []).append(a["asset"])
    for (level, rank, partition, detail), assets in grouped.items():
        names = ", ".join(_t(asset) for asset in assets)
        items.append(
            (level, rank, f"{names} [{_t(partition)}]: {detail}" if partition else f"{names}: {detail}")
        )
    quality = report.get("quality") or {}
    for d in quality.get("drift") or []:
        if d["alarm"]:
            items.append(
                (BAD, 3, f"drift <b>alarm</b>: {_t(d['scope'])} {_t(d['subject'])}{_note(_attribution(d))}")
            )
    for g in quality.get("gates") or []:
        if g["verdict"] == "worse":
            change = _interval(g["diff"], g["ci_low"], g["ci_high"])
            what = f"{_t(g['candidate'])} on {_t(g['eval_set'])}, {change} against {_t(g['baseline'])}"
            items.append((BAD, 3, f"nDCG@10 <b>regressed</b>: {what}"))
    for a in quality.get("answers") or []:
        if a.get("gate_verdict") == "worse":
            change = _interval(a["gate_diff"], a["gate_low"], a["gate_high"])
            what = (
                f"{_t(a['metric'])} of {_t(a['variant'])} on {_t(a['eval_set'])}, {change} against "
                f"{_t(a['gate_baseline'])}"
            )
            items.append((BAD, 3, f"answers <b>regressed</b>: {what}"))
    if not items:
        return '<section id="attention"><h2>Needs attention</h2><p>nothing</p></section>'
    items.sort(key=lambda item: (_ORDER.index(item[0]), item[1]))
    lines = "".join(f'<li class="{level}" data-level="{level}">{text}</li>' for level, _rank, text in items)
    return f'<section id="attention"><h2>Needs attention ({len(items)})</h2><ul>{lines}</ul></section>'


def _assets(report: dict[str, Any], links: _Links, now: dt.datetime) -> str:
    window = report["freshness_window"]
    rows = []
    for a in report["assets"]:
        state, level = _row_state(a)
        partition = (
            f'<a href="{links.asset(a["asset"], a["partition"])}">{_t(a["partition"])}</a>'
            if a["partition"]
            else _NONE
        )
        rows.append(
            f'<tr class="{level}" data-asset="{_t(a["asset"])}" data-partition="{_t(a["partition"])}" '
            f'data-state="{_t(state)}"><td><a href="{links.asset(a["asset"])}">{_t(a["asset"])}</a></td>'
            f'<td class="nowrap">{partition}</td><td>{_badge(state, level)}</td>'
            f"<td>{_run_cell(a, links, now)}</td><td>{_materialized_cell(a, now)}</td>"
            f'<td class="num">{_number(a["rows"])}</td><td>{_check_chips(a, links)}</td></tr>'
        )
    return (
        '<section id="assets"><h2>Assets</h2><table><tr><th>asset</th><th>partition</th><th>state</th>'
        "<th>last run</th><th>last materialized<br>"
        f"<span class=dim>late after {_hours(window['warn_hours'])}, "
        f"stale after {_hours(window['fail_hours'])}</span></th><th class=num>rows</th><th>checks</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _row_state(a: dict[str, Any]) -> tuple[str, str]:
    """The worst thing about an asset partition, as (label, level)."""
    states = set(a["checks"].values())
    candidates = [
        ("failing", BAD, any(_CHECK_LEVEL.get(s, BAD) == BAD for s in states)),
        ("stale", BAD, a["freshness"] == "fail"),
        ("never materialized", BAD, not a["materialized_at"]),
        ("run failed", BAD, _failed_since(a)),
        ("late", WARN, a["freshness"] == "warn"),
        ("warn", WARN, "warn" in states),
        ("not tested", UNTESTED, "not tested" in states),
        ("checks not run", NEUTRAL, "not run" in states),
        ("ok", GOOD, True),
    ]
    return next((label, level) for label, level, applies in candidates if applies)


def _run_status(a: dict[str, Any]) -> str | None:
    return (a.get("last_run") or {}).get("status")


def _failed_since(a: dict[str, Any]) -> bool:
    """The latest run for this partition failed without materializing it. (A run that failed after
    materializing it failed on a check or a later step: that check's or step's row shows it.)"""
    return _run_status(a) == "FAILURE" and a["last_run"]["run_id"] != a["run_id"]


def _run_cell(a: dict[str, Any], links: _Links, now: dt.datetime) -> str:
    run = a.get("last_run")
    if run is None:
        return _badge("no run", NEUTRAL)
    status, level = run["status"].lower(), _RUN_LEVEL.get(run["status"], NEUTRAL)
    if status == "failure" and run["run_id"] == a["run_id"]:
        # It materialized this partition, then failed (a blocking check, a later step): that check
        # or step shows red where it belongs.
        status, level = "failed after materializing", WARN
    return (
        f"{_badge(status, level)} {_run_link(run, links)}"
        f'<br><span class="dim nowrap" title="{_t(run["started_at"])}">started '
        f"{_t(_ago(run['started_at'], now))}</span>"
    )


def _materialized_cell(a: dict[str, Any], now: dt.datetime) -> str:
    if not a["materialized_at"]:
        return _badge("never", BAD)
    label, level = _FRESHNESS.get(a["freshness"], (a["freshness"], NEUTRAL))
    return (
        f'{_badge(label, level)} <span class="nowrap" title="{_t(a["materialized_at"])}">'
        f"{_t(_ago(a['materialized_at'], now))}</span>"
    )


def _check_chips(a: dict[str, Any], links: _Links) -> str:
    chips = []
    for check, state in a["checks"].items():
        level = _CHECK_LEVEL.get(state, BAD)
        note = a.get("check_notes", {}).get(check, "")
        chips.append(
            f'<a class="chip {level}" data-check="{_t(check)}" data-state="{_t(state)}" '
            f'href="{links.check(a["asset"], check)}" title="{_t(state)}{": " if note else ""}{_t(note)}">'
            f"{_CHECK_MARK[level]} {_t(check)}</a>"
        )
    return "".join(chips) or '<span class="dim">no checks</span>'


def _scores(quality: dict[str, Any]) -> str:
    scores = quality.get("scores") or []
    if not scores:
        return '<section id="scores"><h2>Retrieval scores</h2><p class="dim">none stored yet</p></section>'
    gates = {(g["candidate"], g["eval_set"]): g for g in quality.get("gates") or []}
    rows = []
    for s in scores:
        g = gates.get((s["variant"], s["eval_set"]))
        if g and g["diff"] is not None:
            verdict = _badge(g["verdict"], _VERDICT_LEVEL.get(g["verdict"], WARN))
            gate = f"{_interval(g['diff'], g['ci_low'], g['ci_high'])} vs {_t(g['baseline'])} {verdict}"
        else:
            gate = _badge(g["reason"] if g else "not compared", NEUTRAL)
        rows.append(
            f'<tr data-variant="{_t(s["variant"])}" data-eval-set="{_t(s["eval_set"])}">'
            f"<td>{_t(s['variant'])}</td><td>{_t(s['eval_set'])}</td>{_num(_number(s['questions']))}"
            f"{_num(_fixed(s['ndcg'], 4))}<td>{gate}</td>{_num(_fixed(s['recall'], 3))}"
            f"{_num(_fixed(s['mrr'], 3))}{_num(_fixed(s['latency_p95_ms'], 1))}</tr>"
        )
    confidence = quality.get("confidence")
    level = f"{confidence:.0%} " if isinstance(confidence, float) else ""
    out = [
        f'<section id="scores"><h2>Retrieval scores, {_t(scores[0]["partition"])}</h2>',
        "<p class=meta>Change: the mean per-question nDCG@10 difference from the regression gate's baseline "
        f"partition, with its paired bootstrap {level}interval [low, high].</p>",
        "<table><tr><th>variant</th><th>eval set</th><th class=num>questions</th><th class=num>nDCG@10</th>"
        "<th>change [interval], gate</th><th class=num>recall</th><th class=num>MRR</th>"
        f"<th class=num>p95 ms</th></tr>{''.join(rows)}</table>",
    ]
    comparisons = quality.get("comparisons") or []
    if comparisons:
        out.append(
            f"<h3>A/B against the control, {_t(comparisons[0]['partition'])}</h3><table><tr><th>variant</th>"
            "<th>control</th><th>eval set</th><th class=num>questions</th><th class=num>nDCG@10 control</th>"
            "<th class=num>variant</th><th>difference [interval]</th><th>verdict</th></tr>"
        )
        out.extend(
            f'<tr data-ab="{_t(c["variant"])}"><td>{_t(c["variant"])}</td><td>{_t(c["control"])}</td>'
            f"<td>{_t(c['eval_set'])}</td><td class=num>{_number(c['questions'])}</td>"
            f"{_num(_fixed(c['ndcg_control'], 4))}{_num(_fixed(c['ndcg_variant'], 4))}"
            f"<td>{_interval(c['diff'], c['low'], c['high'])}</td>"
            f"<td>{_badge(c['verdict'], _VERDICT_LEVEL.get(c['verdict'], WARN))}</td></tr>"
            for c in comparisons
        )
        out.append("</table>")
    return "".join(out) + "</section>"


def _answers(quality: dict[str, Any]) -> str:
    """The latest answer scores per variant and metric: mean [interval], change since the previous
    partition, the gate's paired interval and verdict, unmeasured questions; the A/B; agreement."""
    answers = quality.get("answers") or []
    if not answers:
        return '<section id="answers"><h2>Answer scores</h2><p class="dim">none stored yet</p></section>'
    rows = []
    for a in answers:
        if a["gate_diff"] is not None:
            verdict = a["gate_verdict"]
            gate = (
                f"{_interval(a['gate_diff'], a['gate_low'], a['gate_high'])} vs {_t(a['gate_baseline'])} "
                f"{_badge(verdict, _VERDICT_LEVEL.get(verdict, WARN))}"
            )
        else:
            reason = (a.get("gate_details") or {}).get("reason") or a.get("gate_verdict") or "not gated"
            gate = _badge(reason, NEUTRAL)
        mean = (
            f"{_fixed(a['mean'], 3)} [{_fixed(a['low'], 3)}, {_fixed(a['high'], 3)}]"
            if a["mean"] is not None
            else _NONE
        )
        samples = a.get("samples")
        level = WARN if a["unmeasured"] or (samples and samples["unmeasured"]) else GOOD
        counted = unmeasured_summary(a["questions"], a["unmeasured"], samples)
        rows.append(
            f'<tr data-variant="{_t(a["variant"])}" data-metric="{_t(a["metric"])}" '
            f'data-eval-set="{_t(a["eval_set"])}"><td>{_t(a["variant"])}</td><td>{_t(a["eval_set"])}</td>'
            f"<td>{_t(a['metric'])}</td><td class=num>{mean}</td>"
            f"{_num(_signed(a['delta']))}<td>{gate}</td>"
            f"<td class=num>{_badge(counted, level)}</td></tr>"
        )
    out = [
        f'<section id="answers"><h2>Answer scores, {_t(answers[0]["partition"])}</h2>',
        "<p class=meta>Mean over the questions measured with its bootstrap interval; change since the "
        "previous partition; the gate: the paired per-question difference from its baseline partition "
        "with its interval. Unmeasured: judge samples that failed, and questions whose every sample "
        "failed (never counted as 0).</p>",
        "<table><tr><th>variant</th><th>eval set</th><th>metric</th><th class=num>mean [interval]</th>"
        "<th class=num>change</th><th>gate [interval], verdict</th><th class=num>unmeasured</th></tr>"
        f"{''.join(rows)}</table>",
    ]
    comparisons = quality.get("answer_comparisons") or []
    if comparisons:
        out.append(
            "<h3>Answer A/B against the control</h3><table><tr><th>candidate</th><th>control</th>"
            "<th>eval set</th><th>metric</th><th class=num>questions</th><th>difference [interval]</th>"
            "<th>verdict</th></tr>"
        )
        out.extend(
            f'<tr data-answer-ab="{_t(c["candidate"])}"><td>{_t(c["candidate"])}</td>'
            f"<td>{_t(c['baseline'])}</td><td>{_t(c['eval_set'])}</td><td>{_t(c['metric'])}</td>"
            f"<td class=num>{_number(c['questions'])}</td>"
            f"<td>{_interval(c['diff'], c['low'], c['high'])}</td>"
            f"<td>{_badge(ab_verdict(c), NEUTRAL)}</td></tr>"
            for c in comparisons
        )
        out.append("</table>")
    agreement = quality.get("judge_agreement") or []
    if agreement:
        out.append("<h3>Judge agreement</h3><ul>")
        out.extend(f"<li>{_t(row)}</li>" for row in agreement)
        out.append("</ul>")
    return "".join(out) + "</section>"


def unmeasured_summary(questions: int, unmeasured: int, samples: dict[str, int] | None) -> str:
    """Unmeasured samples and questions of one answer metric: "2 of 30 samples (1 of 10 questions)"."""
    counted = f"{unmeasured} of {questions} questions"
    if not samples:  # a partition stored before sample counts were kept
        return counted
    return f"{samples['unmeasured']} of {samples['total']} samples ({counted})"


def ab_verdict(row: dict[str, Any]) -> str:
    """An A/B row's verdict with the questions left out because an answer failed, if any."""
    failed = (row.get("details") or {}).get("failed")
    return f"{row['verdict']} ({failed} failed answer pairs not judged)" if failed else row["verdict"]


def _signed(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.3f}"


def pinned_this_run(report: dict[str, Any]) -> bool:
    """The latest drift_metrics run pinned the baseline it then measured against (the first run
    does): the corpus was compared with itself, which tests nothing."""
    rows = [a for a in report["assets"] if a["asset"] == "drift_metrics"]
    return bool(rows and (rows[-1].get("metadata") or {}).get("baseline_pinned_this_run"))


def drift_verdict(d: dict[str, Any], pinned_this_run: bool = False) -> tuple[str, str]:
    """(verdict, level) of one drift row, as the board and `ragline status` both show it."""
    if d["alarm"]:
        return "ALARM", BAD
    if d["p_value"] is None:
        return "not tested", UNTESTED
    if pinned_this_run and d["scope"] == "corpus_vs_baseline":
        return "not tested: baseline pinned by this run", UNTESTED
    if d["significant"] and not d.get("alarming", True):
        # Queries against passages: different kinds of text, nearly always "significant".
        return "context only (never alarms)", GOOD
    if d["significant"]:
        return "significant, new share below drift.min_new_share", WARN
    return "no drift found", GOOD


def _drift(drift: Sequence[dict[str, Any]], pinned_this_run: bool = False) -> str:
    if not drift:
        return '<section id="drift"><h2>Drift</h2><p class="dim">not measured yet</p></section>'
    rows = []
    for d in drift:
        verdict, level = drift_verdict(d, pinned_this_run)
        rows.append(
            f'<tr class="{level}" data-scope="{_t(d["scope"])}" data-subject="{_t(d["subject"])}">'
            f"<td>{_t(d['scope'])}</td><td>{_t(d['subject'])}</td><td class=num>{_fixed(d['effect'], 3)}</td>"
            f"<td class=num>{_fixed(d['p_value'], 3)}</td>"
            f"<td class=num>{_number(d['n_baseline'])} / {_number(d['n_current'])}</td>"
            f"<td>{_badge(verdict, level)}</td><td>{_t(_attribution(d)) or _NONE}</td></tr>"
        )
    return (
        f'<section id="drift"><h2>Drift, {_t(drift[0]["partition"])}</h2><table><tr><th>scope</th>'
        "<th>subject</th><th class=num>new content share</th><th class=num>p-value</th>"
        "<th class=num>rows baseline / current</th><th>verdict</th><th>reason, attribution</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _attribution(d: dict[str, Any]) -> str:
    """Why a row was not tested, and what moved (whichever of these the drift rows carry)."""
    parts = (d.get(key) for key in ("reason", "new_content"))
    return "; ".join(printable(p, 400) for p in parts if p)


def _usage(usage: dict[str, Any] | None) -> str:
    if usage is None:
        return ""
    rows = "".join(
        f"<tr><td>{_t(e['model_id'])}</td><td class=num>{_number(e['texts'])}</td>"
        f"<td class=num>{_number(e['tokens'])}</td></tr>"
        for e in usage["embedded"]
    )
    embedded = (
        "<table><tr><th>embedding model</th><th class=num>texts embedded</th><th class=num>tokens</th></tr>"
        f"{rows}</table>"
        if rows
        else '<p class="dim">nothing embedded today</p>'
    )
    since = _stamp(dt.datetime.fromisoformat(usage["since"]))
    return (
        f'<section id="usage"><h2>Cost of the day, since {_t(since)}</h2>{embedded}'
        f"<p>Queries served and logged: <b>{_number(usage['queries_logged'])}</b></p>"
        f"{_llm_usage(usage['llm'])}</section>"
    )


def _llm_usage(llm: dict[str, Any]) -> str:
    """The day's model calls from the cost ledger: calls, tokens and USD (unpriced models named)."""
    unpriced = (
        f' <span class="dim">(no price for {_t(", ".join(llm["unpriced_models"]))}: not counted)</span>'
        if llm["unpriced_models"]
        else ""
    )
    return (
        f'<p data-llm="recorded">Model calls (chat and embedding): <b>{_number(llm["calls"])}</b>'
        f" ({_number(llm['failed'])} failed), tokens in/out <b>{_number(llm['prompt_tokens'])}</b> / "
        f"<b>{_number(llm['completion_tokens'])}</b>, cost <b>${llm['cost_usd']:.4f}</b>{unpriced}</p>"
    )


def _num(content: str) -> str:
    return f'<td class="num">{content}</td>'


_NONE = '<span class="dim">—</span>'
_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


def _where(a: dict[str, Any]) -> str:
    return f"{_t(a['asset'])} [{_t(a['partition'])}]" if a["partition"] else _t(a["asset"])


def _run_link(run: dict[str, Any], links: _Links) -> str:
    title = _t(run.get("job", ""))
    return f'<a class="run" href="{links.run(run["run_id"])}" title="{title}">{_t(run["run_id"][:8])}</a>'


def _badge(text: str, level: str) -> str:
    return f'<span class="badge {level}">{_t(text)}</span>'


def _note(note: str) -> str:
    return f' <span class="note">— {_t(note)}</span>' if note else ""


def _t(value: object) -> str:
    """Outside text for HTML: control characters escaped, then markup characters."""
    return html.escape(printable("" if value is None else value))


def _number(value: object) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _t(value)


def _fixed(value: float | None, digits: int) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(diff: float | None, low: float | None, high: float | None) -> str:
    if diff is None:
        return "—"
    return f"<b>{diff:+.4f}</b> [{_fixed(low, 4)}, {_fixed(high, 4)}]"


def _hours(hours: float) -> str:
    return f"{hours:g} h"


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return "never"
    minutes = int((now - dt.datetime.fromisoformat(iso)).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min ago"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h ago"


_CSS = """
:root{--bad:#b42318;--bad-bg:#fee4e2;--warn:#93370d;--warn-bg:#fef0c7;--warn-edge:#f79009;
--un:#5925dc;--un-bg:#ebe9fe;--neu:#475467;--neu-bg:#eaecf0;--neu-edge:#98a2b3;
--good:#067647;--good-bg:#dcfae6;--good-edge:#17b26a;--line:#d0d5dd}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;
margin:0;padding:16px 24px 32px;color:#101828;background:#fff}
h1{font-size:20px;margin:0 0 4px;padding:10px 14px;border-radius:6px;border-left:8px solid}
h1.bad{background:var(--bad-bg);color:var(--bad)}h1.warn{background:var(--warn-bg);color:var(--warn)}
h1.good{background:var(--good-bg);color:var(--good)}
h2{font-size:16px;margin:22px 0 6px}h3{font-size:14px;margin:14px 0 6px}
.meta{color:#475467;font-size:12.5px;margin:4px 0 8px}
a{color:#175cd3;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:#475467;font-weight:600;background:#f9fafb}
.num{text-align:right;font-variant-numeric:tabular-nums}.nowrap{white-space:nowrap}
tr.bad>td:first-child{box-shadow:inset 4px 0 var(--bad)}
tr.warn>td:first-child{box-shadow:inset 4px 0 var(--warn-edge)}
tr.untested>td:first-child{box-shadow:inset 4px 0 var(--un)}
tr.neutral>td:first-child{box-shadow:inset 4px 0 var(--neu-edge)}
tr.good>td:first-child{box-shadow:inset 4px 0 var(--good-edge)}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;
white-space:nowrap}
.chip{display:inline-block;margin:1px 4px 1px 0;padding:0 6px;border-radius:4px;font-size:12px;
white-space:nowrap}
section{overflow-x:auto}
.bad.badge,.bad.chip{background:var(--bad-bg);color:var(--bad)}
.warn.badge,.warn.chip{background:var(--warn-bg);color:var(--warn)}
.untested.badge,.untested.chip{background:var(--un-bg);color:var(--un)}
.neutral.badge,.neutral.chip{background:var(--neu-bg);color:var(--neu)}
.good.badge,.good.chip{background:var(--good-bg);color:var(--good)}
.chip.bad{font-weight:700;outline:1px solid var(--bad)}
#attention ul{list-style:none;margin:0;padding:0}
#attention li{padding:5px 10px;margin:3px 0;border-radius:4px;border-left:5px solid}
#attention li.bad{background:var(--bad-bg);border-color:var(--bad)}
#attention li.warn{background:var(--warn-bg);border-color:var(--warn-edge)}
#attention li.untested{background:var(--un-bg);border-color:var(--un)}
#attention li.neutral{background:var(--neu-bg);border-color:var(--neu-edge)}
.note{color:#344054}.dim{color:#667085}
a.run,code{font-family:ui-monospace,SFMono-Regular,Menlo,"DejaVu Sans Mono",monospace;font-size:12.5px}
footer{margin-top:24px}
"""
