"""Recognizers of personal data and credentials in text: a pattern for the shape, then a check
(Luhn, mod 97, a check letter, libphonenumber) so that look-alikes (order numbers, ISBNs,
versions, hashes, dates) are left alone."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True)
class Finding:
    """One recognized value: its kind and where it stands in the text."""

    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Recognizer:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    # The pattern group that is the value (the rest is context, kept in the text); of several
    # named groups, the one that matched.
    group: int | tuple[str, ...] = 0
    # Instead of check: the longest valid prefix of the match, or None (an IBAN followed by a word
    # of four capitals matches the pattern one group too long).
    fit: Callable[[str], str | None] | None = None


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Issuer prefixes of the card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
# Maestro) and their lengths: a Luhn-valid number with another prefix is not taken for a card.
_CARD_PREFIX = re.compile(
    r"^(?:4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"
    r"|3[47]\d{13}|6(?:011|5\d\d|4[4-9]\d)\d{12,15}|35(?:2[89]|[3-8]\d)\d{12,15}|3(?:0[0-5]|[68]\d)\d{11,16}"
    r"|62\d{14,17}|(?:5018|5020|5038|6304|6759|676[1-3])\d{8,15})$"
)


def _card_valid(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


# IBAN lengths by country (ISO 13616 registry).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(value: str) -> bool:
    """True for an IBAN of its country's length whose mod-97 check gives 1."""
    iban = re.sub(r"\s", "", value).upper()
    if _IBAN_LENGTH.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_fit(value: str) -> str | None:
    groups = value.split(" ")
    if len(groups) == 1:
        return value if iban_valid(value) else None
    for n in range(len(groups), 2, -1):
        candidate = " ".join(groups[:n])
        if iban_valid(candidate):
            return candidate
    return None


def _ssn_valid(value: str) -> bool:
    area, group, serial = re.split(r"[- ]", value)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(value: str) -> bool:
    """True when a Spanish DNI/NIE's letter matches its number (mod 23)."""
    compact = value.replace("-", "").upper()
    number = compact[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return _DNI_LETTERS[int(number) % 23] == compact[-1]


# Regions tried for numbers written without a country code (+...), which carry one on their own.
_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "IN")


def phone_valid(value: str) -> bool:
    """True when libphonenumber takes the number for a valid one (with its +country code, or
    in one of a few common regions)."""
    regions = (None,) if value.lstrip().startswith("+") else _PHONE_REGIONS
    for region in regions:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _email_valid(value: str) -> bool:
    domain = value.rsplit("@", 1)[1].lower()
    # icon@2x.png is a file name, not an address
    return domain.rsplit(".", 1)[1] not in _FILE_EXTENSIONS and not re.match(r"^\d+x\.", domain)


_FILE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "ts", "py", "md", "txt"}

# Values of a "name = value" assignment that name a secret without being one.
_NOT_A_SECRET = re.compile(
    r"(?i)^(?:none|null|true|false|undefined|changeme|redacted|example|placeholder|x+|\*+|(?-i:[A-Z_]+)|"
    r"\$\{?\w+\}?|<[^>]*>|%\w+%|os\.environ.*|env\(.*|process\.env.*|getenv\(.*|your[_-].*|.*[_-]here)$"
)


def _assigned_secret(value: str) -> bool:
    if _NOT_A_SECRET.match(value) or re.search(r"\s", value):  # a quoted phrase is prose
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return len(value) >= 20 or (len(value) >= 8 and classes >= 2 and re.search(r"[0-9]", value) is not None)


_NOT_WORD = r"(?<![A-Za-z0-9_])"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9_])"

# Ordered by precedence: where two findings overlap, the earlier recognizer wins (a card number's
# digits are not also a phone number; a JWT after "Bearer" is a JWT).
RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*$)"
        ),
    ),
    Recognizer(
        "jwt", re.compile(_NOT_WORD + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
    ),
    Recognizer(
        "api_key",
        re.compile(
            _NOT_WORD + r"(?:sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
            r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub
            r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"  # AWS access key id
            r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
            r"|AIza[0-9A-Za-z_-]{35}"  # Google
            r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
            r"|glpat-[A-Za-z0-9_-]{20,})" + _NOT_WORD_AFTER  # GitLab
        ),
    ),
    # api_key = "...", "password": "...", AWS_SECRET_ACCESS_KEY=...: the value only. The match
    # starts at the keyword and every repeat is bounded: a leading [\w.-]* made "a-a-a-..." quadratic.
    Recognizer(
        "api_key",
        re.compile(
            r"(?i)(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_-]?key|credentials?)"
            r"[\w.-]{0,40}[\"'\]]{0,2}[ \t]{0,8}(?:=|:|=>)[ \t]{0,8}"
            r"(?:\"(?P<double>[^\"\n]{8,1000}?)\"|'(?P<single>[^'\n]{8,1000}?)'"
            r"|(?P<bare>[^\s\"',;}{)(\]\[]{8,1000}))"
        ),
        _assigned_secret,
        group=("double", "single", "bare"),
    ),
    # the password of URL userinfo: postgresql://app:s3cret@localhost/db
    Recognizer(
        "api_key",
        re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,20}://[^\s/:@]{0,100}:([^\s/@]{1,200})@[\w.-]"),
        group=1,
    ),
    Recognizer(
        "bearer_token", re.compile(r"(?i)\bbearer(?: token)?(?: is|:)?\s+([A-Za-z0-9._~+/=-]{16,})"), group=1
    ),
    Recognizer(
        "card",
        re.compile(
            _NOT_WORD
            + r"(?:[0-9]{4}(?:([ -])[0-9]{4}){2,3}(?:\1[0-9]{1,3})?|[0-9]{4}([ -])[0-9]{6}\2[0-9]{4,5}"
            r"|[0-9]{13,19})" + _NOT_WORD_AFTER
        ),
        _card_valid,
    ),
    Recognizer(
        "iban",
        re.compile(
            _NOT_WORD + r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?" + _NOT_WORD_AFTER
        ),
        fit=_iban_fit,
    ),
    Recognizer(
        "email",
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
        ),
        _email_valid,
    ),
    Recognizer("ssn", re.compile(_NOT_WORD + r"[0-9]{3}-[0-9]{2}-[0-9]{4}(?![\w-])"), _ssn_valid),
    Recognizer(
        "ssn",
        re.compile(
            r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\s*(?:#|:|is)?\s*"
            r"([0-9]{3} ?[0-9]{2} ?[0-9]{4})\b"
        ),
        lambda v: _ssn_valid(re.sub(r"^(...)(..)(....)$", r"\1-\2-\3", v.replace(" ", ""))),
        group=1,
    ),
    # UK National Insurance number: two prefix letters (not D, F, I, Q, U, V; not O second; not
    # BG, GB, KN, NK, NT, TN, ZZ), six digits, suffix A-D.
    Recognizer(
        "nino",
        re.compile(
            _NOT_WORD + r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]" + _NOT_WORD_AFTER
        ),
    ),
    Recognizer(
        "dni", re.compile(_NOT_WORD + r"(?:[0-9]{8}|[XYZ][0-9]{7})-?[A-Z]" + _NOT_WORD_AFTER), dni_valid
    ),
    Recognizer(
        "phone",
        re.compile(
            r"(?<![\w+-])"
            r"(?:\+[1-9][0-9]{0,2}[ .-]?(?:\(0?[0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}"
            r"|\(0?[0-9]{2,4}\)[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}"
            r"|0[0-9]{2,4}[ .-][0-9]{3,4}[ .-]?[0-9]{3,4}"
            r"|[2-9][0-9]{2}[.-][2-9][0-9]{2}[.-][0-9]{4}|[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4})"
            r"(?![\w-])"
        ),
        phone_valid,
    ),
    # Bare digits are a phone number only where the text says so.
    Recognizer(
        "phone",
        re.compile(
            r"(?i)\b(?:call|phone|tel|mobile|cell|fax|whatsapp|sms)\b\D{0,12}?(?<![\w+-])([0-9]{10,11})\b"
        ),
        phone_valid,
        group=1,
    ),
)


def find(text: str, kinds: Iterable[str]) -> list[Finding]:
    """The values of the given kinds in text, without overlaps, in the order they stand."""
    wanted = set(kinds)
    taken: list[Finding] = []  # sorted by start, as are starts and ends
    starts: list[int] = []
    ends: list[int] = []
    for recognizer in RECOGNIZERS:
        if recognizer.kind not in wanted:
            continue
        for match in recognizer.pattern.finditer(text):
            group = recognizer.group
            if isinstance(group, tuple):
                group = next(name for name in group if match.group(name) is not None)
            start, end = match.span(group)
            value = match.group(group)
            if recognizer.check is not None and not recognizer.check(value):
                continue
            if recognizer.fit is not None:
                fitted = recognizer.fit(value)
                if fitted is None:
                    continue
                value, end = fitted, start + len(fitted)
            # taken spans do not overlap, so sorted by start their ends rise too: only the last
            # one starting before this end can overlap it
            i = bisect.bisect_left(starts, end)
            if i and ends[i - 1] > start:
                continue
            starts.insert(i, start)
            ends.insert(i, end)
            taken.insert(i, Finding(recognizer.kind, start, end, value))
    return taken
