"""The guard of one answer: redact before the model call, flag passages, check what comes back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragline.config import SECRET_KINDS, GuardrailSettings
from ragline.guardrails.injection import injection_flags
from ragline.guardrails.recognizers import Finding, find

REFUSAL = "I can't return this answer: it did not pass the output checks."
_PLACEHOLDER = re.compile(r"<([A-Z_]+)_([0-9]+)>")
# [3] or [1, 4] with the blanks before it; not a[0] (an index), [x] (a checkbox) or [2](url) (a link)
_CITATION = re.compile(
    r"([ \t]*)(?<!\w)\[([0-9]+(?:\s*[-–]\s*[0-9]+)?(?:\s*,\s*[0-9]+(?:\s*[-–]\s*[0-9]+)?)*)\](?!\()"
)


def _normalized(kind: str, value: str) -> str:
    """The form two spellings of one value share (case of an e-mail, spaces in a card number)."""
    if kind in ("email", "iban", "nino", "dni"):
        return re.sub(r"[\s-]", "", value).lower()
    if kind in ("card", "phone", "ssn"):
        return re.sub(r"[^0-9+]", "", value)
    return value


@dataclass
class Redaction:
    """Texts with their personal data and credentials replaced by placeholders like <EMAIL_1>, the
    same placeholder for the same value everywhere in one request."""

    texts: list[str]
    found: dict[str, int]  # kind -> how many distinct values were replaced
    restorable: frozenset[str] = frozenset()  # kinds restore() puts back
    values: dict[str, str] = field(default_factory=dict, repr=False)  # placeholder -> original value
    kinds: dict[str, str] = field(default_factory=dict, repr=False)  # placeholder -> kind

    def restore(self, text: str) -> str:
        """text with the placeholders of restorable kinds put back; the others stay placeholders."""

        def back(match: re.Match[str]) -> str:
            placeholder = match.group()
            if self.kinds.get(placeholder) in self.restorable:
                return self.values[placeholder]
            return placeholder

        return _PLACEHOLDER.sub(back, text)

    def restored_values(self) -> set[str]:
        """The normalized values restore() may put into an answer."""
        return {_normalized(k, self.values[p]) for p, k in self.kinds.items() if k in self.restorable}


@dataclass
class OutputCheck:
    """The outcome of the output checks: the text to return and what was wrong with it."""

    text: str  # the text to return (restored, repaired, or the refusal)
    action: str  # "ok" | "repaired" | "refused" | "flagged": the strongest action taken
    violations: list[str]  # e.g. ["citation [7] not in context", "email in output"]


class Guard:
    """Guardrails of one configuration; holds no state between requests."""

    def __init__(self, settings: GuardrailSettings) -> None:
        self.settings = settings
        self._blocklist = [
            re.compile(
                (r"(?<!\w)" if term[0].isalnum() else "")
                + re.escape(term)
                + (r"(?!\w)" if term[-1].isalnum() else ""),
                re.IGNORECASE,
            )
            for term in settings.blocklist
        ]

    def redact(self, texts: Sequence[str]) -> Redaction:
        """The texts with every configured kind replaced by a placeholder, stable across the texts."""
        redaction = Redaction(texts=[], found={}, restorable=frozenset(self.settings.restore))
        if not self.settings.enabled:
            redaction.texts = list(texts)
            return redaction
        by_value: dict[tuple[str, str], str] = {}
        # A text that already holds "<EMAIL_1>" (a page about placeholders) keeps it as it is:
        # restore() must not turn it into an address.
        reserved = {match.group() for text in texts for match in _PLACEHOLDER.finditer(text)}
        for text in texts:
            findings = find(text, self.settings.redact)
            redaction.texts.append(_replace(text, findings, redaction, by_value, reserved))
        return redaction

    def injection_flags(self, passage: str) -> list[str]:
        """The names of the injection patterns matched in a retrieved passage (none when off)."""
        if not self.settings.enabled or self.settings.injection == "off":
            return []
        return injection_flags(passage)

    def blocked_at(self, text: str) -> int | None:
        """Where the first blocklisted term in text starts, or None (also when off)."""
        if not self.settings.enabled:
            return None
        return min((m.start() for p in self._blocklist if (m := p.search(text))), default=None)

    def check_output(self, text: str, *, available: set[int], redaction: Redaction) -> OutputCheck:
        """Restore what the policy allows, then check citations, personal data and credentials,
        the blocklist and the length; each violation is repaired, refused or flagged as configured."""
        text = redaction.restore(text)
        if not self.settings.enabled:
            return OutputCheck(text, "ok", [])
        actions = self.settings.actions
        violations: list[str] = []
        taken: set[str] = set()

        def violated(message: str, action: str) -> None:
            violations.append(message)
            taken.add(action)

        for pattern, term in zip(self._blocklist, self.settings.blocklist, strict=True):
            if pattern.search(text):
                violated(f"blocklisted term {term!r} in output", actions.blocklist)
                if actions.blocklist == "repair":
                    text = pattern.sub("[removed]", text)

        # a kind that is not redacted (the model saw it) may be in the answer; a restored value too
        allowed = redaction.restored_values()
        leaked = [f for f in find(text, self.settings.redact) if _normalized(f.kind, f.value) not in allowed]
        for kind in dict.fromkeys(f.kind for f in leaked):
            violated(f"{kind} in output", actions.secret if kind in SECRET_KINDS else actions.pii)
        for f in sorted(leaked, key=lambda f: -f.start):
            if (actions.secret if f.kind in SECRET_KINDS else actions.pii) == "repair":
                text = f"{text[: f.start]}[{f.kind} removed]{text[f.end :]}"

        def cited(match: re.Match[str]) -> str:
            kept, missing = [], False
            for item in match.group(2).split(","):
                first, _, last = re.sub(r"\s", "", item).replace("–", "-").partition("-")
                low, high = int(first), int(last or first)
                # [1-3] cites 1, 2 and 3; a range wider than the context cannot be all in it
                numbers = range(low, high + 1) if 0 <= high - low <= len(available) else None
                if numbers is not None and all(n in available for n in numbers):
                    kept.append(item.strip())
                    continue
                missing = True
                violated(f"citation [{item.strip()}] not in context", actions.citation)
                kept += [str(n) for n in numbers or () if n in available]
            if not missing or actions.citation != "repair":
                return match.group()
            return f"{match.group(1)}[{', '.join(kept)}]" if kept else ""

        text = _CITATION.sub(cited, text)

        limit = self.settings.max_answer_chars
        if limit is not None and len(text) > limit:
            violated(f"answer longer than {limit} characters", actions.length)
            if actions.length == "repair":
                cut = text[: limit - 1]
                text = (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"

        if "refuse" in taken:
            return OutputCheck(REFUSAL, "refused", violations)
        if "repair" in taken:
            return OutputCheck(text, "repaired", violations)
        return OutputCheck(text, "flagged" if violations else "ok", violations)


def _replace(
    text: str,
    findings: list[Finding],
    redaction: Redaction,
    by_value: dict[tuple[str, str], str],
    reserved: set[str],
) -> str:
    """text with each finding replaced by its placeholder, recorded in the redaction."""
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        key = (f.kind, _normalized(f.kind, f.value))
        placeholder = by_value.get(key)
        if placeholder is None:
            redaction.found[f.kind] = number = redaction.found.get(f.kind, 0) + 1
            placeholder = f"<{f.kind.upper()}_{number}>"
            while placeholder in reserved or placeholder in redaction.values:
                number += 1
                placeholder = f"<{f.kind.upper()}_{number}>"
            by_value[key] = placeholder
            redaction.values[placeholder] = f.value
            redaction.kinds[placeholder] = f.kind
        out.append(text[last : f.start])
        out.append(placeholder)
        last = f.end
    out.append(text[last:])
    return "".join(out)
