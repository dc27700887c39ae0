"""Sources: find a source's files and turn each into normalised documents, or a quarantine record."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import math
import os
import re
import select
import stat
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

from ragline.config import JsonlSettings, PdfSettings, SourceSettings
from ragline.safe_text import printable
from ragline.types import SourceError

MARKDOWN_SUFFIXES = {".md", ".markdown"}
TEXT_SUFFIXES = {".txt", ".text", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES | PDF_SUFFIXES

# Leading bytes of common binary formats: a file starting with one of these is binary, whatever
# its name says.
_BINARY_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"PK\x03\x04",
    b"\x7fELF",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"MZ",
    b"\xca\xfe\xba\xbe",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"SQLite format 3",
)
_SNIFF_BYTES = 8192
# C0 control bytes (0x01-0x1f) other than tab, newline, vertical tab, form feed and carriage return
# (NUL is counted apart): counted in C by deleting them (bytes.translate), where a Python loop over
# 8 KB per file took 2.7 s of a 5,000-file scan.
_CONTROL_BYTES = bytes(range(1, 9)) + bytes(range(14, 32))


# Postgres keys (ragline.documents' (source, doc_id), ragline.quarantine's (source, path)) must fit
# a btree entry (about 2,700 bytes); longer ids and paths are shortened to a prefix and a hash.
MAX_KEY_BYTES = 1000
# json.loads refuses integers of more than 4,300 digits; longer ones are kept as digit strings.
_MAX_INT_DIGITS = 4000
_MAX_METADATA_DEPTH = 64


@dataclass(frozen=True)
class Document:
    """One normalised document: its id is stable across runs, its hash covers text and metadata."""

    doc_id: str
    path: str
    text: str
    metadata: dict[str, Any]
    line: int | None = None  # a JSON Lines record's line: where it is, not what it is (not hashed)

    @property
    def content_hash(self) -> str:
        return _hash(self.text, self.metadata)

    @property
    def legacy_hash(self) -> str | None:
        """The hash before the line number left a record's metadata: a stored hash equal to it
        means the record is unchanged."""
        if self.line is None:
            return None
        return _hash(self.text, {"line": self.line, **self.metadata})


def _hash(text: str, metadata: dict[str, Any]) -> str:
    payload = json.dumps({"text": text, "metadata": metadata}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Rejection:
    """A file, or one line of a JSON Lines file, that is not loaded, and why.

    `path` names it for people and keys the quarantine table (`file` or `file:line`); `file` is
    the file as ragline.documents.path stores it. What the rejection keeps from being marked
    deleted: the file's documents when `protects_file`, else only `doc_id` (a bad line whose
    record id could still be read).
    """

    path: str
    reason: str
    detail: str
    file: str
    size_bytes: int | None = None
    doc_id: str | None = None
    protects_file: bool = True


@dataclass
class ScanResult:
    """A source's documents and rejections. From `stream_source`, `documents` is read once, as the
    files load, and `rejections` and `files_seen` are complete only once it has been read through."""

    documents: Iterable[Document] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    files_seen: int = 0


class Quarantined(Exception):
    """Why a file or line is not loaded; `record_id` is the record a bad line still names."""

    def __init__(
        self, reason: str, detail: str, size: int | None = None, record_id: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.size = size
        self.record_id = record_id


def scan_source(source: SourceSettings) -> ScanResult:
    """Load every file of the source; bad files become rejections and the rest still loads."""
    scan = stream_source(source)
    documents = list(scan.documents)
    return ScanResult(documents, scan.rejections, scan.files_seen)


def stream_source(source: SourceSettings) -> ScanResult:
    """As scan_source, but documents come one file at a time, so a store can write them as they load
    instead of holding the whole source's text. Its documents can be read once."""
    _check_root(source)
    result = ScanResult()
    result.documents = _Stream(source, result)
    return result


def _check_root(source: SourceSettings) -> None:
    if not source.root.is_dir():
        raise SourceError(
            f"source {source.name!r}: root folder {source.root} does not exist; "
            "nothing was changed (a missing folder is not taken as 'every document deleted')"
        )


class _Stream:
    """A streamed scan's documents: a second read would find none and take every document as
    deleted, so it is refused."""

    def __init__(self, source: SourceSettings, result: ScanResult) -> None:
        self._source = source
        self._result = result
        self._read = False

    def __iter__(self) -> Iterator[Document]:
        if self._read:
            raise SourceError(
                f"source {self._source.name!r}: a streamed scan's documents can be read only once; "
                "scan the source again"
            )
        self._read = True
        return _load_documents(self._source, self._result)


def _load_documents(source: SourceSettings, result: ScanResult) -> Iterator[Document]:
    # Again when the reading starts: the store may have waited for the source's lock meanwhile,
    # and a root that is gone now would read as empty.
    _check_root(source)
    seen_ids: dict[str, str] = {}
    with PdfParser(source.pdf) as pdf:
        for entry in _entries(source):
            result.files_seen += 1
            place = stored_path(entry.rel)
            try:
                if entry.problem is not None:
                    raise entry.problem
                docs, line_rejections = load_file(entry, source, pdf)
            except Quarantined as q:
                # A link ragline must not read keeps nothing it once served from being removed.
                keep = q.reason not in _NOT_READ
                result.rejections.append(
                    Rejection(place, q.reason, q.detail, place, q.size, protects_file=keep)
                )
                continue
            except Exception as exc:  # noqa: BLE001  (RecursionError, MemoryError included)
                detail = f"{type(exc).__name__}: {printable(exc, 300)}"
                result.rejections.append(Rejection(place, "loader_error", detail, place))
                continue
            result.rejections.extend(line_rejections)
            for doc in docs:
                where = _where(doc.path, doc.line)
                if doc.doc_id in seen_ids:
                    result.rejections.append(
                        Rejection(
                            where,
                            "duplicate_id",
                            f"id already used at {seen_ids[doc.doc_id]}",
                            doc.path,
                            doc_id=doc.doc_id,
                            protects_file=False,
                        )
                    )
                    continue
                seen_ids[doc.doc_id] = where
                yield doc


# Rejections that are ragline's policy rather than a passing fault: the file's documents go.
_NOT_READ = frozenset({"symlink", "outside_root", "broken_symlink"})


def _where(place: str, line: int | None) -> str:
    return key_safe(place if line is None else f"{place}:{line}")


# --- Names and ids --------------------------------------------------------------------------------


def file_id(rel: str) -> str:
    """A file's document id: its path, unless the path could be mistaken for a record id
    (`coll.jsonl#7.md`), holds bytes that are not UTF-8, or starts with the escape mark '%~'.
    Those become '%~' + the path with '%' and '#' (and each non-UTF-8 byte) as %XX: such an id has
    no '#', so it is never a record id, and only escaped ids start with '%~'. Ordinary paths, '%'
    and '#' included, keep the id they always had."""
    if not _NEEDS_ESCAPE.search(rel):
        return rel
    return _ESCAPE_MARK + _ID_ESCAPES.sub(_escape_char, rel)


_ESCAPE_MARK = "%~"
_NEEDS_ESCAPE = re.compile(r"\A%~|\.(?:jsonl|ndjson)#|[\udc80-\udcff]", re.IGNORECASE)
_ID_ESCAPES = re.compile(r"[%#\udc80-\udcff]")
_NON_UTF8 = re.compile(r"[\udc80-\udcff]")  # os.fsdecode's surrogateescape of a byte


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch) - 0xDC00 if ch >= "\udc80" else ord(ch)
    return f"%{code:02X}"


def json_lines(text: str) -> list[str]:
    """JSON Lines split on '\n' only (a trailing '\r' dropped): U+2028 and other separators that
    str.splitlines() breaks on are valid inside a JSON string."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def record_doc_id(file_rel: str, record_id: object) -> str:
    """The document id of record `record_id` of the JSON Lines file at `file_rel` (as the loader
    makes it, so an evaluation set's relevant ids meet the loaded ones)."""
    return key_safe(f"{file_id(file_rel)}#{clean_text(str(record_id))}")


def stored_path(rel: str) -> str:
    """A path as Postgres can store and index it, and no other file's: a name with bytes that are
    not UTF-8 (or starting with '%~') as its escaped id, shortened with a hash when it is too long
    for an index key."""
    if rel.startswith(_ESCAPE_MARK) or _NON_UTF8.search(rel):
        return key_safe(file_id(rel))
    return key_safe(rel)


def key_safe(value: str) -> str:
    """`value`, or when it is too long for an index key: a readable prefix, '%!' and a sha256.

    For a document id the prefix is cut from the file part (before any '#'), where a '%' is
    always followed by two hex digits in an ordinary id, so a shortened id never equals one."""
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_KEY_BYTES:
        return value
    prefix = value.split("#", 1)[0][:200]
    escape = prefix.find("%", len(prefix) - 2)  # not cut inside a %XX escape
    prefix = prefix[:escape] if escape >= 0 else prefix
    return f"{prefix}%!{hashlib.sha256(encoded).hexdigest()}"


# --- Text safe for Postgres -----------------------------------------------------------------------

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Text Postgres accepts: NUL dropped, lone surrogates replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")  # fails on lone surrogates only; C speed where the regex is not
        except UnicodeEncodeError:
            text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def clean_metadata(value: Any, depth: int = 0) -> Any:
    """A JSON value jsonb accepts: strings cleaned, NaN and Infinity as null; too deep raises."""
    if depth > _MAX_METADATA_DEPTH:
        raise Quarantined("metadata_too_deep", f"metadata nested deeper than {_MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_metadata(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_metadata(v, depth + 1) for v in value]
    return value


# Characters that print nothing: controls, format characters (zero-width spaces and joiners, BOM),
# private use, unassigned, combining marks alone, U+FFFD. The embedding tokenizer drops them all, so
# a text of only these would yield no chunk.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Co", "Cn", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"}


def has_visible_text(text: str) -> bool:
    return any(
        not ch.isspace() and ch != "\ufffd" and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        for ch in text
    )


def _document(
    doc_id: str, place: str, body: str, metadata: dict[str, Any], line: int | None = None
) -> Document:
    """A document with Postgres-safe text and metadata; raises Quarantined when nothing visible is
    left."""
    body = normalise(clean_text(body))
    if not has_visible_text(body):
        raise Quarantined(
            "empty_file",
            "no visible text after normalisation (only whitespace, markup or invisible characters)",
        )
    metadata = clean_metadata(metadata)
    return Document(key_safe(doc_id), place, body, metadata, line)


# --- Finding and reading files ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    rel: str  # the path under the root as found, '/'-separated (bytes that are not UTF-8 escaped)
    path: Path  # what to read: the file itself, or a followed link's target inside the root
    parts: tuple[str, ...]
    problem: Quarantined | None = None


def _entries(source: SourceSettings) -> Iterator[_Entry]:
    """The source's files matching its glob, in path order (component by component), found as they
    are read rather than listed first; hidden files and folders left out. Symbolic links come back
    with a problem unless followed to a target inside the root."""
    root = source.root.resolve()
    pattern = PurePosixPath(source.glob).parts

    def walk(folder: Path, parts: tuple[str, ...], visited: frozenset[Path]) -> Iterator[_Entry]:
        try:
            with os.scandir(folder) as it:
                # Each folder's names in order, depth first: the order of the paths' component tuples.
                items = sorted(it, key=lambda item: item.name)
        except OSError:
            return
        for item in items:
            if item.name.startswith("."):
                continue
            rel_parts = (*parts, item.name)
            rel = "/".join(rel_parts)
            if item.is_symlink():
                target, problem = _link_target(Path(item.path), root, source.follow_symlinks)
                if problem is None and target.is_dir():
                    if _may_match_below(pattern, rel_parts) and target not in visited:
                        yield from walk(target, rel_parts, visited | {target})
                elif _matches(pattern, rel_parts) or (item.is_dir() and _may_match_below(pattern, rel_parts)):
                    yield _Entry(rel, target, rel_parts, problem)
            elif item.is_dir(follow_symlinks=False):
                if _may_match_below(pattern, rel_parts):
                    yield from walk(Path(item.path), rel_parts, visited)
            elif item.is_file(follow_symlinks=False) and _matches(pattern, rel_parts):
                yield _Entry(rel, Path(item.path), rel_parts)

    yield from walk(root, (), frozenset({root}))


def _link_target(link: Path, root: Path, follow: bool) -> tuple[Path, Quarantined | None]:
    if not follow:
        return link, Quarantined(
            "symlink", "a symbolic link (not followed; follow_symlinks: true reads links inside the root)"
        )
    try:
        target = link.resolve()
    except (OSError, RuntimeError):  # a loop of links
        return link, Quarantined("broken_symlink", "a symbolic link that loops")
    if not target.is_relative_to(root):
        return link, Quarantined(
            "outside_root", f"a symbolic link to {printable(target, 200)}, outside the root"
        )
    if not target.exists():
        return link, Quarantined("broken_symlink", "a symbolic link to nothing")
    return target, None


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """pathlib's glob semantics for a relative path: '**' is any number of folders."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _matches(rest, parts[1:])


def _may_match_below(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether some path under the folder `parts` can match the pattern."""
    if not parts:
        return bool(pattern)
    if not pattern:
        return False
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return True
    return fnmatch.fnmatchcase(parts[0], head) and _may_match_below(rest, parts[1:])


def _opened_path(fd: int, path: Path) -> Path:
    """Where the open file really is: the kernel's own path of the descriptor, with no symbolic
    link in it (a folder swapped for a link after the walk shows here), read in one call.
    realpath() of the same name lstat()ed every component again: 0.36 s against 0.05 s to open,
    check and close 5,000 files (benchmarks/scan_path_check.py)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except FileNotFoundError:  # no /proc (not Linux, or not mounted): the name, resolved
        return path.resolve()
    except OSError as exc:  # any other failure is no proof that the file is inside the root
        raise Quarantined("unreadable", f"its open path cannot be read: {exc.strerror}") from None


def _read(path: Path, limit: int, root: Path) -> bytes:
    """At most limit bytes of a regular file inside the root (a file can grow after stat())."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Quarantined("symlink", "the file became a symbolic link") from None
        raise Quarantined("unreadable", f"{type(exc).__name__}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Quarantined("not_a_file", "not a regular file")
        real = _opened_path(fd, path)
        if not real.is_relative_to(root):
            raise Quarantined("outside_root", "the file lies outside the root")
        data = f.read(limit + 1)
    if len(data) > limit:
        size = max(st.st_size, len(data))
        raise Quarantined("too_large", f"{size} bytes is over the limit of {limit} bytes", size)
    if not data:
        raise Quarantined("empty_file", "the file has 0 bytes", 0)
    return data


def load_file(
    entry: _Entry, source: SourceSettings, pdf: PdfParser
) -> tuple[list[Document], list[Rejection]]:
    """Documents from one file, plus per-line rejections for JSON Lines; raises Quarantined."""
    data = _read(entry.path, source.max_file_bytes, source.root.resolve())
    place = stored_path(entry.rel)
    doc_id = file_id(entry.rel)
    suffix = PurePosixPath(entry.rel).suffix.lower()
    if suffix in PDF_SUFFIXES:
        return [_pdf_document(data, doc_id, place, pdf)], []
    _reject_binary(data)
    if suffix not in SUPPORTED_SUFFIXES:
        raise Quarantined(
            "unsupported_type", f"no loader for {printable(suffix, 40) or 'files without a suffix'}"
        )
    text = _decode(data)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_documents(text, doc_id, place, source)
    if suffix in HTML_SUFFIXES:
        title, body = html_to_text(text)
        metadata = {"format": "html", "title": title}
    else:
        body = text
        fmt = "markdown" if suffix in MARKDOWN_SUFFIXES else "text"
        metadata = {"format": fmt, "title": _first_heading(body) if fmt == "markdown" else None}
    metadata = {k: v for k, v in metadata.items() if v}
    return [_document(doc_id, place, body, metadata)], []


def _reject_binary(data: bytes) -> None:
    head = data[:_SNIFF_BYTES]
    if head.startswith(_BINARY_MAGIC):
        raise Quarantined("binary_file", "starts with the signature of a binary format")
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    nuls = head.count(0)
    if head and (controls + nuls) / len(head) > 0.10:
        raise Quarantined(
            "binary_file", f"{controls + nuls} of the first {len(head)} bytes are control bytes"
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise Quarantined("nul_bytes", f"NUL byte at offset {nul}")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Quarantined(
            "invalid_utf8", f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8"
        ) from None


_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def normalise(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    # Each pattern only where it can match: a substring test runs in C, the regex scan does not
    # (1.73 -> 0.44 s over the 5,000-file synthetic corpus, which has neither).
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def _first_heading(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


# --- JSON Lines ---------------------------------------------------------------------------------


def _parse_int(digits: str) -> int | str:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else digits


def _parse_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


# NaN and Infinity (which Python's json accepts and jsonb refuses) become null; integers too long
# for Python's int() become their digit string.
_JSON = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=lambda _c: None)


def _jsonl_documents(
    text: str, file_doc_id: str, place: str, source: SourceSettings
) -> tuple[list[Document], list[Rejection]]:
    """One document per line, id `file#record_id`. Lines are split on '\n' only: U+2028 and other
    separators are valid inside a JSON string."""
    spec = source.jsonl
    id_near = re.compile(r'"' + re.escape(spec.id_field) + r'"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')
    docs: list[Document] = []
    rejections: list[Rejection] = []
    for lineno, line in enumerate(json_lines(text), start=1):
        if not line.strip():
            continue
        try:
            docs.append(_jsonl_record(line, lineno, file_doc_id, place, spec))
        except Quarantined as q:
            record_id = q.record_id
            if record_id is None and q.reason in ("invalid_json", "too_deep"):
                record_id = _readable_id(id_near, line)
            rejections.append(
                Rejection(
                    _where(place, lineno),
                    q.reason,
                    q.detail,
                    place,
                    doc_id=None if record_id is None else key_safe(f"{file_doc_id}#{record_id}"),
                    # A line whose record we cannot name may be any record that vanished.
                    protects_file=record_id is None and q.reason in ("invalid_json", "too_deep"),
                )
            )
        except Exception as exc:  # noqa: BLE001  (any other failure rejects this line only)
            detail = f"{type(exc).__name__}: {printable(exc, 300)}"
            rejections.append(Rejection(_where(place, lineno), "invalid_record", detail, place))
    if not docs and not rejections:
        raise Quarantined("empty_file", "no JSON lines in the file")
    return docs, rejections


def _jsonl_record(line: str, lineno: int, file_doc_id: str, place: str, spec: JsonlSettings) -> Document:
    try:
        record = _JSON.decode(line)
    except json.JSONDecodeError as exc:
        raise Quarantined("invalid_json", exc.msg) from None
    except RecursionError:
        raise Quarantined("too_deep", "JSON nested too deep to parse") from None
    if not isinstance(record, dict):
        raise Quarantined("invalid_json", "the line is not a JSON object")
    record_id = record.get(spec.id_field)
    if record_id is None or isinstance(record_id, bool | dict | list) or str(record_id).strip() == "":
        raise Quarantined(
            "missing_id", f"no usable {printable(spec.id_field, 80)!r} field (a string or a number)"
        )
    record_id = clean_text(str(record_id))
    fields = ", ".join(spec.text_fields)
    try:
        parts = [str(record[f]).strip() for f in spec.text_fields if record.get(f) not in (None, "")]
        metadata: dict[str, Any] = {"format": "jsonl", "record_id": record_id}
        metadata.update({f: record[f] for f in spec.metadata_fields if f in record})
        return _document(f"{file_doc_id}#{record_id}", place, "\n\n".join(parts), metadata, lineno)
    except Quarantined as q:  # the bad line still names its record, which it keeps from deletion
        if q.reason == "empty_file":
            raise Quarantined(
                "empty_text", f"no visible text in fields {printable(fields, 200)}", record_id=record_id
            ) from None
        raise Quarantined(q.reason, q.detail, record_id=record_id) from None
    except RecursionError:
        raise Quarantined(
            "metadata_too_deep", "a field nested too deep to read", record_id=record_id
        ) from None


def _readable_id(id_near: re.Pattern[str], line: str) -> str | None:
    """The record id of a line that does not parse, when the line names exactly one."""
    found = id_near.findall(line)
    if len(found) != 1:
        return None
    try:
        value = json.loads(found[0], parse_int=str)
    except ValueError:
        return None
    value = clean_text(str(value))
    return value if value.strip() else None


# --- PDF ------------------------------------------------------------------------------------------


def _pdf_document(data: bytes, doc_id: str, place: str, pdf: PdfParser) -> Document:
    if not data.lstrip()[:5] == b"%PDF-":
        raise Quarantined("corrupt_pdf", "no %PDF- header")
    parsed = pdf.parse(data)
    if "reason" in parsed:
        raise Quarantined(parsed["reason"], clean_text(str(parsed["detail"])))
    pages = parsed["pages"]
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    title = clean_text(parsed["title"] or "")
    if title:
        metadata["title"] = title
    try:
        return _document(doc_id, place, "\n\n".join(pages), metadata)
    except Quarantined as q:
        raise Quarantined("empty_file", f"no extractable text in {len(pages)} PDF pages") from q


class PdfParser:
    """Parses PDFs in a separate process (ragline/ingest/pdf_worker.py) under the source's time,
    memory and page limits. One process serves a whole scan; it is replaced after a PDF that
    times out or exhausts its memory. Started with subprocess (fork+exec, no Python code between),
    which is safe from a threaded parent such as a Dagster step."""

    def __init__(self, settings: PdfSettings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PdfParser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe:
                    pipe.close()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("pdf_worker.py")),
                str(self.settings.max_memory_mb << 20),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            close_fds=True,
        )
        self._proc = proc
        try:
            ready = self._line(time.monotonic() + _WORKER_START_SECONDS)
        except (TimeoutError, EOFError):
            self._kill()
            raise Quarantined("pdf_parser_unavailable", "the PDF parser process did not start") from None
        if ready != b"ready\n":
            self._kill()
            raise Quarantined("pdf_parser_unavailable", "the PDF parser process did not start")
        return proc

    def parse(self, data: bytes) -> dict[str, Any]:
        """{"pages": [...], "title": ...} or {"reason": ..., "detail": ...}."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        header = json.dumps({"size": len(data), "max_pages": self.settings.max_pages}).encode() + b"\n"
        limit = self.settings.timeout_seconds
        try:
            assert proc.stdin is not None
            proc.stdin.write(header + data)
            reply = self._line(time.monotonic() + limit)
        except TimeoutError:
            self._kill()
            return {
                "reason": "pdf_timeout",
                "detail": f"parsing took longer than {limit:g} s (pdf.timeout_seconds)",
            }
        except (EOFError, BrokenPipeError):
            code = proc.poll()
            self._kill()
            return {"reason": "pdf_parser_died", "detail": f"the parser process ended (exit code {code})"}
        answer = json.loads(reply)
        if answer.get("reason") == "pdf_memory_limit":
            self._kill()
        return answer

    def _line(self, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buffer = bytearray()
        while not buffer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError
            buffer += chunk
        return bytes(buffer)


_WORKER_START_SECONDS = 60.0


# --- HTML -----------------------------------------------------------------------------------------

_INVISIBLE = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
_BOILERPLATE = {"nav", "footer"}
_BLOCK = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "br",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "hr",
    "form",
    "figure",
    "figcaption",
    "aside",
}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_VOID = {
    "br",
    "hr",
    "img",
    "input",
    "meta",
    "link",
    "area",
    "base",
    "col",
    "embed",
    "source",
    "track",
    "wbr",
}


# An inline style that hides the element: display:none or visibility:hidden/collapse, with or
# without !important, in any case and spacing.
_CSS_HIDDEN = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|(?:content-)?visibility\s*:\s*(?:hidden|collapse))"
    r"\s*(?:!\s*important\s*)?(?:;|$)",
    re.IGNORECASE,
)


_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)(?:</style\s*>|$)", re.IGNORECASE | re.DOTALL)
_CSS_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
# A simple selector ragline can apply without a CSS engine: .class or #id, with an optional tag.
_SIMPLE_SELECTOR = re.compile(r"^[a-z0-9]*([.#])(-?[_a-zA-Z][\w-]*)$", re.IGNORECASE)


def _hides(declarations: str) -> bool:
    return _CSS_HIDDEN.search(_CSS_COMMENT.sub("", declarations).strip()) is not None


def _hidden_by_stylesheets(html: str) -> tuple[frozenset[str], frozenset[str]]:
    """Classes and ids that the page's own <style> blocks hide (rules whose selector is a simple
    .class or #id); descendant, attribute and media-query selectors are not evaluated."""
    classes: set[str] = set()
    ids: set[str] = set()
    for block in _STYLE_BLOCK.findall(html):
        for selectors, declarations in _CSS_RULE.findall(_CSS_COMMENT.sub("", block)):
            if not _hides(declarations):
                continue
            for selector in selectors.split(","):
                match = _SIMPLE_SELECTOR.match(selector.strip())
                if match:
                    (classes if match.group(1) == "." else ids).add(match.group(2))
    return frozenset(classes), frozenset(ids)


class _VisibleText(HTMLParser):
    def __init__(
        self, hidden_classes: frozenset[str] = frozenset(), hidden_ids: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden_classes = hidden_classes
        self.hidden_ids = hidden_ids
        self.parts: list[str] = []
        self.skip_stack: list[str] = []
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _VOID:
            if tag in ("br", "hr") and not self.skip_stack:
                self.parts.append("\n")
            return
        hidden = any(
            name == "hidden"
            or (name == "aria-hidden" and value == "true")
            or (name == "style" and value is not None and _hides(value))
            or (name == "class" and value is not None and not self.hidden_classes.isdisjoint(value.split()))
            or (name == "id" and value in self.hidden_ids)
            for name, value in attrs
        )
        if self.skip_stack or tag in _INVISIBLE or tag in _BOILERPLATE or hidden:
            self.skip_stack.append(tag)
            return
        if tag in _HEADINGS:
            self.parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
        elif tag in _BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if self.skip_stack:
            if tag == self.skip_stack[-1]:
                self.skip_stack.pop()
            elif tag in self.skip_stack:  # tolerate unclosed children inside a skipped element
                while self.skip_stack and self.skip_stack.pop() != tag:
                    pass
            return
        if tag in _HEADINGS or tag in _BLOCK:
            self.parts.append("\n\n" if tag in _HEADINGS or tag == "p" else "\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.skip_stack:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str | None, str]:
    """Visible text of an HTML page (no scripts, styles or nav/footer), headings as Markdown."""
    parser = _VisibleText(*_hidden_by_stylesheets(html))
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    title = " ".join("".join(parser.title).split()) or None
    return title, normalise("\n".join(lines))


def source_fingerprint(source: SourceSettings) -> str:
    """A hash of the source's file list with sizes and modification times: cheap change detection."""
    digest = hashlib.sha256()
    if not source.root.is_dir():
        return "missing"
    for entry in _entries(source):
        try:
            st = entry.path.lstat()
        except OSError:
            continue
        digest.update(os.fsencode(entry.rel) + f"\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
