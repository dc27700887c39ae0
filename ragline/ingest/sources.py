"""Sources: find a source's files and turn each into normalised documents, or a quarantine record."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ragline.config import SourceSettings
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


@dataclass(frozen=True)
class Document:
    """One normalised document: its id is stable across runs, its hash covers text and metadata."""

    doc_id: str
    path: str
    text: str
    metadata: dict[str, Any]

    @property
    def content_hash(self) -> str:
        payload = json.dumps({"text": self.text, "metadata": self.metadata}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Rejection:
    """A file, or one line of a JSON Lines file, that is not loaded, and why."""

    path: str
    reason: str
    detail: str
    size_bytes: int | None = None

    @property
    def file(self) -> str:
        return self.path.split(":", 1)[0]


@dataclass
class ScanResult:
    documents: list[Document] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    files_seen: int = 0


class Quarantined(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def scan_source(source: SourceSettings) -> ScanResult:
    """Load every file of the source; bad files become rejections and the rest still loads."""
    if not source.root.is_dir():
        raise SourceError(
            f"source {source.name!r}: root folder {source.root} does not exist; "
            "nothing was changed (a missing folder is not taken as 'every document deleted')"
        )
    result = ScanResult()
    seen_ids: dict[str, str] = {}
    for file in _files(source):
        result.files_seen += 1
        rel = file.relative_to(source.root).as_posix()
        size = file.stat().st_size
        try:
            docs, line_rejections = load_file(file, rel, source)
        except Quarantined as q:
            result.rejections.append(Rejection(rel, q.reason, q.detail, size))
            continue
        result.rejections.extend(line_rejections)
        for doc in docs:
            if doc.doc_id in seen_ids:
                result.rejections.append(
                    Rejection(doc.path, "duplicate_id", f"id already used by {seen_ids[doc.doc_id]}")
                )
                continue
            seen_ids[doc.doc_id] = doc.path
            result.documents.append(doc)
    return result


def _files(source: SourceSettings) -> Iterator[Path]:
    for path in sorted(source.root.glob(source.glob)):
        rel_parts = path.relative_to(source.root).parts
        if path.is_file() and not any(part.startswith(".") for part in rel_parts):
            yield path


def load_file(path: Path, rel: str, source: SourceSettings) -> tuple[list[Document], list[Rejection]]:
    """Documents from one file, plus per-line rejections for JSON Lines; raises Quarantined."""
    size = path.stat().st_size
    if size == 0:
        raise Quarantined("empty_file", "the file has 0 bytes")
    if size > source.max_file_bytes:
        raise Quarantined("too_large", f"{size} bytes is over the limit of {source.max_file_bytes} bytes")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return [_pdf_document(data, rel)], []
    _reject_binary(data)
    if suffix not in SUPPORTED_SUFFIXES:
        raise Quarantined("unsupported_type", f"no loader for {suffix or 'files without a suffix'}")
    text = _decode(data)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_documents(text, rel, source)
    if suffix in HTML_SUFFIXES:
        title, body = html_to_text(text)
        metadata = {"format": "html", "title": title}
    else:
        body = text
        fmt = "markdown" if suffix in MARKDOWN_SUFFIXES else "text"
        metadata = {"format": fmt, "title": _first_heading(body) if fmt == "markdown" else None}
    body = normalise(body)
    if not body:
        raise Quarantined("empty_file", "no text after normalisation (only whitespace or markup)")
    metadata = {k: v for k, v in metadata.items() if v}
    return [Document(rel, rel, body, metadata)], []


def _reject_binary(data: bytes) -> None:
    head = data[:_SNIFF_BYTES]
    if head.startswith(_BINARY_MAGIC):
        raise Quarantined("binary_file", "starts with the signature of a binary format")
    controls = sum(1 for b in head if 0 < b < 9 or 13 < b < 32)
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
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def _first_heading(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


# --- JSON Lines ---------------------------------------------------------------------------------


def _jsonl_documents(text: str, rel: str, source: SourceSettings) -> tuple[list[Document], list[Rejection]]:
    spec = source.jsonl
    docs: list[Document] = []
    rejections: list[Rejection] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{rel}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rejections.append(Rejection(where, "invalid_json", exc.msg))
            continue
        if not isinstance(record, dict):
            rejections.append(Rejection(where, "invalid_json", "the line is not a JSON object"))
            continue
        record_id = record.get(spec.id_field)
        if record_id is None or str(record_id).strip() == "":
            rejections.append(Rejection(where, "missing_id", f"no {spec.id_field!r} field"))
            continue
        parts = [str(record[f]).strip() for f in spec.text_fields if record.get(f) not in (None, "")]
        body = normalise("\n\n".join(parts))
        if not body:
            fields = ", ".join(spec.text_fields)
            rejections.append(Rejection(where, "empty_text", f"no text in fields {fields}"))
            continue
        metadata: dict[str, Any] = {"format": "jsonl", "line": lineno, "record_id": str(record_id)}
        metadata.update({f: record[f] for f in spec.metadata_fields if f in record})
        docs.append(Document(f"{rel}#{record_id}", rel, body, metadata))
    if not docs and not rejections:
        raise Quarantined("empty_file", "no JSON lines in the file")
    return docs, rejections


# --- PDF ------------------------------------------------------------------------------------------


def _pdf_document(data: bytes, rel: str) -> Document:
    import io

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings duplicate our reason
    from pypdf.errors import PyPdfError

    if not data.lstrip()[:5] == b"%PDF-":
        raise Quarantined("corrupt_pdf", "no %PDF- header")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise Quarantined("encrypted_pdf", "the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except Quarantined:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise Quarantined("corrupt_pdf", f"{type(exc).__name__}: {exc}") from None
    body = normalise("\n\n".join(pages))
    if not body:
        raise Quarantined("empty_file", f"no extractable text in {len(pages)} PDF pages")
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    if title:
        metadata["title"] = str(title)
    return Document(rel, rel, body, metadata)


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


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
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
        hidden = any(name == "hidden" for name, _ in attrs) or any(
            name == "aria-hidden" and value == "true" for name, value in attrs
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
    parser = _VisibleText()
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
    for path in _files(source):
        stat = path.stat()
        rel = path.relative_to(source.root).as_posix()
        digest.update(f"{rel}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
