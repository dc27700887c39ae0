"""Text that came from outside (file names, document text, endpoint replies) made safe to show
and to store: control characters escaped for logs and terminals, credentials scrubbed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides: any of
# them in a log line or a terminal can forge a line, move the cursor or reorder what is shown.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(value: object, limit: int | None = None) -> str:
    """`value` as one line fit for a log or a terminal: every control character escaped
    (\\n, \\x1b, \\u2028), and cut to `limit` characters with an ellipsis."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# What a credential looks like in an error body, a DSN or a URL. Each keeps its label and replaces
# only the secret with ***; over-redacting an error excerpt is cheap, leaking a key is not.
_CREDENTIALS = (
    # Header lines and JSON members: "Authorization: Bearer x", "authorization": "Basic x", api-key=x
    re.compile(
        r"(?i)((?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie)"
        r"(\"?\s*[:=]\s*\"?)((?:\\\"|[^\"\r\n,}])*)"
    ),
    re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})"),
    # DSN and query parameters, conninfo keyword/value pairs (quoted values too), JSON members,
    # environment assignments (PGPASSWORD=...).
    re.compile(
        r"(?i)\b([\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)|key|sig|signature)(\"?\s*[:=]\s*)('(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|[^\s&;,'\"]+)"
    ),
    # The password of URL userinfo: scheme://user:password@host
    # (up to the last @ of the authority: passwords may hold an unescaped @)
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@]*)(:)([^\s/]+?)(?=@[^\s/@?#]*(?:[/?#\s]|$))"),
    # Keys in OpenAI's format, wherever they stand
    re.compile(r"()()\b(sk-[A-Za-z0-9_-]{6,})"),
)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with credentials replaced by ***: the given secrets (also JSON- or URL-escaped), and
    anything shaped like one (Authorization headers, bearer tokens, sk-… keys, password= in DSNs,
    URLs and conninfo strings, the password of URL userinfo)."""
    for secret in secrets:
        if secret:
            for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}:
                text = text.replace(form, "***")
    for pattern in _CREDENTIALS:
        text = pattern.sub(r"\1\2***", text)
    return text


def credentials(text: str) -> list[str]:
    """The secret values `scrub` would replace in `text`, to scrub them from other texts too (a
    libpq error quotes the piece of a malformed DSN it could not parse, password included)."""
    found = (m.group(3).strip("'\"") for pattern in _CREDENTIALS for m in pattern.finditer(text))
    return [value for value in found if value]
