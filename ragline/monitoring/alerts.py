"""Alerts to on-call: one message per open problem (a failed run, a failed check, a stale asset),
a reminder at most every alerts.reminder_hours while it stays open, and a resolve message when it
recovers. Destinations: a Slack-compatible webhook, a generic JSON webhook and SMTP.

State lives in ragline.alerts (migration 0005): what each destination is still owed survives a
failed send and a restart, and is retried on the next `deliver`. Sending never raises: a failure
is recorded (naming the destination's host, never its URL path, token or password) and retried.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from ragline.config import AlertSettings, SmtpAlertSettings, WebhookAlertSettings, is_loopback_url
from ragline.safe_text import printable, scrub
from ragline.storage.db import ALERT_DELIVERY_LOCK, query

SEVERITIES = ("error", "warn")
DELIVERY_LIMIT = 20  # problems sent per deliver(): a tick stays short when destinations are slow
DETAIL_LIMIT = 2000  # characters of detail kept and sent: an error's first lines, not a traceback
TITLE_LIMIT = 200


@dataclass(frozen=True)
class Problem:
    """Something on-call must hear about. key names the problem, not the occurrence: the same key
    seen again while open is the same problem (run:<job>:<partition>, check:<asset>.<check>:<partition>)."""

    key: str
    title: str  # one line: what is wrong, where
    detail: str = ""  # the evidence and what to do
    severity: str = "error"  # error | warn
    link: str | None = None  # where to look (the Dagster UI's run or asset page)
    # This sighting's id (a run id, a check execution id): the same one seen again on a later tick
    # is not counted again. None: every call counts.
    occurrence: str | None = None


@dataclass(frozen=True)
class Message:
    """One notification: the first alert of a problem, a reminder while it stays open, or its resolve."""

    kind: str  # alert | reminder | resolve
    key: str
    severity: str
    title: str
    detail: str
    link: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    occurrences: int
    resolved_at: dt.datetime | None

    @property
    def headline(self) -> str:
        if self.kind == "resolve":
            return f"RESOLVED: {self.title}"
        label = "FAILED" if self.severity == "error" else "WARNING"
        again = f" (still open since {_when(self.first_seen)})" if self.kind == "reminder" else ""
        return f"{label}: {self.title}{again}"

    def text(self) -> str:
        lines = [self.headline]
        if self.kind == "resolve":
            lines.append(
                f"Open from {_when(self.first_seen)} to {_when(self.resolved_at or self.last_seen)}."
            )
        elif self.detail:
            lines.append(self.detail)
        if self.occurrences > 1 and self.kind != "resolve":
            lines.append(f"Seen {self.occurrences} times, last at {_when(self.last_seen)}.")
        if self.link:
            lines.append(self.link)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": "ragline",
            "kind": self.kind,
            "state": "resolved" if self.kind == "resolve" else "open",
            "key": self.key,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "link": self.link,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "occurrences": self.occurrences,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "text": self.text(),
        }

    def as_slack(self) -> dict[str, Any]:
        """Slack's incoming-webhook format: `text` for notifications and clients without blocks."""
        icon = {"resolve": ":white_check_mark:", "warn": ":warning:"}.get(
            "resolve" if self.kind == "resolve" else self.severity, ":red_circle:"
        )
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{_mrkdwn(self.headline)}*"}}
        ]
        body = self.text().split("\n", 1)[1] if "\n" in self.text() else ""
        if body:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(body)}})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(self.key)}]})
        return {"text": self.text(), "blocks": blocks}


class DeliveryError(Exception):
    """A destination did not accept a message. The text names its host, never a secret. `down`:
    the destination cannot take any message now (unreachable, timeout, 5xx, not configured); else
    only this message was refused (HTTP 4xx, SMTP 5xx on the data), and the next ones are sent."""

    def __init__(self, text: str, down: bool = True) -> None:
        super().__init__(text)
        self.down = down


class Destination(Protocol):
    name: str

    def send(self, message: Message) -> None: ...


class Webhook:
    """POSTs JSON to the URL in an environment variable: Slack's format or ragline's own."""

    def __init__(self, name: str, settings: WebhookAlertSettings, timeout_seconds: float) -> None:
        self.name = name
        self.settings = settings
        self.timeout_seconds = timeout_seconds

    def send(self, message: Message) -> None:
        url = self.settings.url()
        if url is None:
            raise DeliveryError(f"{self.name}: ${self.settings.url_env} is not set")
        parts = urlsplit(url)
        host = printable(parts.hostname or "?", limit=100)
        where = f"{'Slack' if self.name == 'slack' else 'JSON'} webhook at {host}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"{self.name}: ${self.settings.url_env} is not an http(s) URL with a host")
        if parts.scheme == "http" and not is_loopback_url(url):
            # The path of a webhook URL is its credential: never send it in clear text.
            raise DeliveryError(f"{where}: refusing plain http to a remote host; use https")
        body = message.as_slack() if self.name == "slack" else message.as_json()
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": "ragline-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read(4096)
        except urllib.error.HTTPError as exc:
            # 408 and 429: the receiver is busy, not this message at fault.
            down = exc.code >= 500 or exc.code in (408, 429)
            raise DeliveryError(f"{where}: HTTP {exc.code}", down=down) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            secrets = [url, parts.path, parts.query]
            raise DeliveryError(f"{where}: {type(reason).__name__}: {_safe(reason, secrets)}") from None


class Smtp:
    def __init__(self, settings: SmtpAlertSettings, timeout_seconds: float) -> None:
        self.name = "smtp"
        self.settings = settings
        self.timeout_seconds = timeout_seconds

    def send(self, message: Message) -> None:
        s = self.settings
        where = f"smtp at {printable(s.host, limit=100)}:{s.port}"
        password = s.password()
        if s.password_env and password is None:
            raise DeliveryError(f"{where}: ${s.password_env} is not set")
        mail = EmailMessage()
        mail["Subject"] = f"[ragline] {message.headline}"[:250]
        mail["From"] = s.sender
        mail["To"] = ", ".join(s.recipients)
        mail.set_content(message.text())
        try:
            if s.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=self.timeout_seconds, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=self.timeout_seconds)
            with client:
                if s.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.username and password is not None:
                    client.login(s.username, password)
                client.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            # A permanent refusal of the message's data (552 too large, 554 rejected) is this message's.
            refused = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
            text = f"{where}: {type(exc).__name__}: {_safe(exc, [password])}"
            raise DeliveryError(text, down=not refused) from None


def destinations(settings: AlertSettings) -> list[Destination]:
    out: list[Destination] = []
    if settings.slack is not None:
        out.append(Webhook("slack", settings.slack, settings.timeout_seconds))
    if settings.webhook is not None:
        out.append(Webhook("webhook", settings.webhook, settings.timeout_seconds))
    if settings.smtp is not None:
        out.append(Smtp(settings.smtp, settings.timeout_seconds))
    return out


# --- state ---------------------------------------------------------------------------------------


def record_problem(
    conn: psycopg.Connection, settings: AlertSettings, problem: Problem, now: dt.datetime
) -> str:
    """Note that `problem` holds now. A new problem (or one that had been resolved) owes an alert
    to every destination; an open one is only counted: deduplicated, unless it went from warn to
    error (alerted again). Returns what happened: "opened", "repeated", "escalated"."""
    if problem.severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {problem.severity!r}")
    title = printable(problem.title, limit=TITLE_LIMIT)
    detail = _clean(problem.detail)
    with conn.transaction():
        row = (
            conn.cursor(row_factory=dict_row)
            .execute(query("alert_for_update"), {"key": problem.key})
            .fetchone()
        )
        if row is None or row["state"] == "resolved":
            row = _new_row(problem.key, now) | {"owed": "alert", "owed_to": list(settings.destinations)}
            outcome = "opened"
        else:
            if problem.occurrence is None or problem.occurrence != row["last_occurrence"]:
                row["occurrences"] += 1
            outcome = "repeated"
            if row["severity"] == "warn" and problem.severity == "error":
                # Worse than what on-call was told (a late asset now past fail_hours): tell them again.
                row |= {"owed": "alert", "owed_to": list(settings.destinations)}
                outcome = "escalated"
        row |= {
            "severity": problem.severity,
            "title": title,
            "detail": detail,
            "link": problem.link,
            "last_seen": now,
            "last_occurrence": problem.occurrence,
        }
        conn.execute(query("save_alert"), row)
    return outcome


def record_recovery(conn: psycopg.Connection, settings: AlertSettings, key: str, now: dt.datetime) -> bool:
    """The problem `key` no longer holds. If it was open, it is resolved and owes a resolve message
    to each destination that heard of it (none, if its alert had reached no one yet). True if it
    was open."""
    with conn.transaction():
        row = conn.cursor(row_factory=dict_row).execute(query("alert_for_update"), {"key": key}).fetchone()
        if row is None or row["state"] != "open":
            return False
        told = [d for d in settings.destinations if not (row["owed"] == "alert" and d in row["owed_to"])]
        row |= {"state": "resolved", "resolved_at": now, "owed": "resolve" if told else None, "owed_to": told}
        conn.execute(query("save_alert"), row)
    return True


def open_problems(conn: psycopg.Connection, prefix: str = "") -> list[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row).execute(query("open_alerts"), {"prefix": prefix}).fetchall()


@dataclass
class Delivery:
    sent: int = 0  # messages delivered to a destination
    failed: int = 0  # sends that failed (retried next time)
    errors: list[str] | None = None


def deliver(
    conn: psycopg.Connection,
    settings: AlertSettings,
    now: dt.datetime,
    senders: Iterable[Destination] | None = None,
    limit: int = DELIVERY_LIMIT,
) -> Delivery:
    """Send what is owed: new alerts, due reminders and resolves, to each destination that has not
    received them yet, at most `limit` problems per call. A failed send stays owed (retried on the
    next call); a destination that is down (DeliveryError.down) is not tried again in this call,
    one that refused only this message (or whose sender raised a bug) gets the next ones. Rows
    whose last send failed go after the others, so one that is always refused blocks nothing.
    Never raises for a failed send.

    Claim, send, record: the sends happen outside any transaction (on an autocommit connection no
    row is locked while a destination takes its timeout); one delivery runs at a time."""
    senders = {d.name: d for d in (destinations(settings) if senders is None else senders)}
    result = Delivery(errors=[])
    with conn.transaction():
        conn.execute(
            query("owe_alert_reminders"),
            {
                "destinations": list(settings.destinations),
                "now": now,
                "reminder_seconds": settings.reminder_hours * 3600,
            },
        )
    with conn.transaction():
        claimed = conn.execute(
            query("advisory_try_lock"), {"namespace": ALERT_DELIVERY_LOCK, "name": ""}
        ).fetchone()[0]
    if not claimed:
        return result  # another delivery is sending: it sends this too
    try:
        with conn.transaction():
            rows = conn.cursor(row_factory=dict_row).execute(query("owed_alerts")).fetchall()
        down: set[str] = set()  # destinations that failed in this call
        tried = 0
        for row in rows:
            if tried >= limit:
                break
            # A row owed only to destinations that are down waits for a later call without using up
            # the limit, so the messages behind it still go to the destinations that work.
            live = [name for name in row["owed_to"] if name in senders and name not in down]
            if not live and any(name in senders for name in row["owed_to"]):
                continue
            tried += 1
            message = _message(row)
            sent, dropped, errors = [], [], []
            for name in row["owed_to"]:
                sender = senders.get(name)
                if sender is None:
                    dropped.append(name)  # no longer configured: nothing to owe it
                    continue
                if name in down:
                    continue
                try:
                    sender.send(message)
                    sent.append(name)
                    result.sent += 1
                except DeliveryError as exc:
                    errors.append(str(exc))
                    if exc.down:
                        down.add(name)
                except Exception as exc:  # a sender's bug (with this message) must not stop the others
                    errors.append(f"{name}: {type(exc).__name__}: {_safe(exc, [])}")
            result.failed += len(errors)
            result.errors.extend(errors)
            _record_sent(conn, row, sent, dropped, errors, now)
    finally:
        with conn.transaction():
            conn.execute(query("advisory_unlock"), {"namespace": ALERT_DELIVERY_LOCK, "name": ""})
    return result


def _message(row: dict[str, Any]) -> Message:
    return Message(
        kind=row["owed"],
        key=row["key"],
        severity=row["severity"],
        title=row["title"],
        detail=row["detail"],
        link=row["link"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        occurrences=row["occurrences"],
        resolved_at=row["resolved_at"],
    )


def _record_sent(
    conn: psycopg.Connection,
    claimed: dict[str, Any],
    sent: list[str],
    dropped: list[str],
    errors: list[str],
    now: dt.datetime,
) -> None:
    """What a send reached, recorded on the row as it is now: if the problem moved on meanwhile
    (escalated, resolved), only what still applies is struck off."""
    with conn.transaction():
        row = (
            conn.cursor(row_factory=dict_row)
            .execute(query("alert_for_update"), {"key": claimed["key"]})
            .fetchone()
        )
        if row is None:
            return
        if errors:
            row["last_error"] = "; ".join(errors)
        same = row["owed"] == claimed["owed"] and row["severity"] == claimed["severity"]
        if same:
            row["owed_to"] = [d for d in row["owed_to"] if d not in sent and d not in dropped]
            if not row["owed_to"]:
                if row["owed"] != "resolve":
                    row["last_sent"] = now
                row["owed"] = None
                row["last_error"] = None  # delivered: no longer ordered after the others
        elif row["state"] == "resolved" and row["owed"] in ("resolve", None) and claimed["owed"] != "resolve":
            # Resolved while its alert was being sent: those that just heard of it get the resolve too.
            row["owed_to"] = [*row["owed_to"], *(d for d in sent if d not in row["owed_to"])]
            row["owed"] = "resolve" if row["owed_to"] else None
        conn.execute(query("save_alert"), row)


def _new_row(key: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "key": key,
        "state": "open",
        "first_seen": now,
        "occurrences": 1,
        "last_sent": None,
        "resolved_at": None,
        "last_error": None,
    }


def _clean(text: str) -> str:
    """Detail text from outside (an error message): control characters escaped line by line,
    credentials scrubbed, cut to DETAIL_LIMIT."""
    lines = [printable(line) for line in scrub(text).strip().splitlines()]
    joined = "\n".join(lines)
    return joined if len(joined) <= DETAIL_LIMIT else joined[:DETAIL_LIMIT] + "…"


def _safe(exc: object, secrets: list[str | None]) -> str:
    return printable(scrub(str(exc), secrets), limit=200)


def _mrkdwn(text: str) -> str:
    # Slack's control characters in mrkdwn: & < > (links and mentions); escaped as Slack documents.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
