"""Loaders: what each format yields, and why a bad file is rejected."""

from __future__ import annotations

import re
import sysconfig
import unicodedata
from pathlib import Path

import pytest

from ragline.config import JsonlSettings, SourceSettings
from ragline.ingest.sources import Quarantined, _read, html_to_text, normalise, scan_source
from ragline.types import SourceError
from tests.conftest import EXAMPLES


def _source(root: Path, **kw) -> SourceSettings:
    return SourceSettings(name="s", root=root, **kw)


def test_demo_formats_load_with_metadata():
    scan = scan_source(_source(EXAMPLES / "product_docs"))
    by_id = {d.doc_id: d for d in scan.documents}
    assert scan.rejections == []
    html = by_id["install-agent.html"]
    assert html.metadata["format"] == "html" and html.metadata["title"]
    assert "<" not in html.text and "function" not in html.text  # no markup, no script
    assert by_id["cli-reference.txt"].metadata == {"format": "text"}
    assert by_id["pricing-plans.md"].metadata["format"] == "markdown"

    pdfs = scan_source(_source(EXAMPLES / "policies", glob="*.pdf")).documents
    assert len(pdfs) == 3 and all(d.metadata["pages"] >= 3 for d in pdfs)
    assert all("policy" in d.text.lower() or "agreement" in d.text.lower() for d in pdfs)


def test_html_keeps_visible_text_only():
    title, text = html_to_text(
        "<html><head><title>Install</title><style>.a{color:red}</style>"
        "<script>track('x')</script></head><body><nav>Home | Docs</nav>"
        "<h2>Step 1</h2><p>Run <code>harbor init</code>.</p><div hidden>secret</div>"
        "<noscript>enable js</noscript><footer>(c) 2026</footer></body></html>"
    )
    assert title == "Install"
    assert text == "## Step 1\n\nRun harbor init."
    for hidden in ("color", "track", "Home", "secret", "enable js", "2026"):
        assert hidden not in text


def test_jsonl_fields_ids_and_bad_lines(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        '{"ticket_id": "T-1", "subject": "Agent down", "body": "It stopped.", "priority": "high"}\n'
        "{not json}\n"
        '{"subject": "no id"}\n'
        '{"ticket_id": "T-2", "subject": "", "body": ""}\n'
        '{"ticket_id": "T-1", "subject": "again", "body": "dup"}\n'
    )
    spec = JsonlSettings(id_field="ticket_id", text_fields=("subject", "body"), metadata_fields=("priority",))
    scan = scan_source(_source(tmp_path, jsonl=spec))
    [doc] = scan.documents
    assert doc.doc_id == "t.jsonl#T-1"
    assert doc.text == "Agent down\n\nIt stopped."
    # The line is where the record is, not what it is: not in the metadata, not in the hash.
    assert doc.metadata == {"format": "jsonl", "record_id": "T-1", "priority": "high"} and doc.line == 1
    reasons = {(r.path, r.reason) for r in scan.rejections}
    assert reasons == {
        ("t.jsonl:2", "invalid_json"),
        ("t.jsonl:3", "missing_id"),
        ("t.jsonl:4", "empty_text"),
        ("t.jsonl:5", "duplicate_id"),
    }
    [dup] = [r for r in scan.rejections if r.reason == "duplicate_id"]
    assert dup.detail == "id already used at t.jsonl:1"


def test_content_hash_changes_with_text_only(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nSame text.\r\n\r\n\r\n")
    (tmp_path / "b.md").write_text("# A\n\nSame text.\n")
    a, b = scan_source(_source(tmp_path)).documents
    assert a.text == b.text and a.content_hash == b.content_hash


def test_missing_root_is_an_error_not_a_mass_deletion(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        scan_source(_source(tmp_path / "nope"))


def test_unsupported_and_hidden_files(tmp_path):
    (tmp_path / "notes.docx").write_text("plain text in a docx name")
    (tmp_path / ".hidden.md").write_text("# Hidden")
    scan = scan_source(_source(tmp_path))
    assert [(r.path, r.reason) for r in scan.rejections] == [("notes.docx", "unsupported_type")]
    assert scan.files_seen == 1


def test_files_load_in_path_order_component_by_component(tmp_path):
    """Files are found as the folders are read, not listed first, and still load in one fixed
    order: the paths' component tuples ('a/x' before 'a-b/x' although '-' sorts before '/')."""
    names = ["a/x.md", "a-b/x.md", "ab.md", "a.md", "B.md", "é.md", "z/10.md", "z/2.md", "z/1/deep.md"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n\nText of {name}.\n")
    scan = scan_source(_source(tmp_path))
    assert [d.path for d in scan.documents] == sorted(names, key=lambda n: tuple(n.split("/")))
    assert scan.files_seen == len(names)


def test_binary_sniffing_counts_exactly_the_control_bytes(tmp_path):
    """A text file whose first bytes are over 10% control bytes (NUL and 0x01-0x08, 0x0e-0x1f; not
    tab, newline, vertical tab, form feed or carriage return) is quarantined as binary: each byte
    value, 11 of 100 bytes."""
    for v in range(256):
        (tmp_path / f"v{v:03d}.txt").write_bytes(b"a" * 89 + bytes([v]) * 11)
    (tmp_path / "nul6.txt").write_bytes(b"a" * 94 + bytes(6))  # 6 %: NULs are counted once
    scan = scan_source(SourceSettings(name="s", root=tmp_path, glob="*.txt"))
    reasons = {r.path: r.reason for r in scan.rejections}
    binary = sorted(int(p[1:4]) for p, reason in reasons.items() if reason == "binary_file")
    assert binary == [0, *range(1, 9), *range(14, 32)]
    # Bytes from 0x80 on are no control bytes: those files fail as text instead.
    assert {reasons[f"v{v:03d}.txt"] for v in range(128, 256)} == {"invalid_utf8"}
    assert reasons["nul6.txt"] == "nul_bytes"
    assert len(scan.documents) == 128 - len(binary)


def test_a_file_reached_through_a_folder_link_is_read_only_if_it_lies_inside_the_root(tmp_path):
    """What the walk listed can change before the read: a folder swapped for a link to elsewhere.
    O_NOFOLLOW guards only the last name; the open file's own path (the kernel's, links resolved)
    decides. Within the root, a folder link reads the file; out of it, nothing is read."""
    # Resolved, as load_file passes it: a temporary folder behind a link must not look outside.
    root, outside = tmp_path.resolve() / "root", tmp_path.resolve() / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "doc.md").write_text("inside")
    (outside / "doc.md").write_text("swordfish")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "swapped").symlink_to(outside, target_is_directory=True)

    assert _read(root / "alias" / "doc.md", 100, root) == b"inside"
    with pytest.raises(Quarantined) as refused:
        _read(root / "swapped" / "doc.md", 100, root)
    assert refused.value.reason == "outside_root"


def test_normalising_text_skips_only_patterns_that_cannot_match():
    """normalise runs each regex only where a substring test finds it can match; the result equals
    running both everywhere, on hand-made cases and on the installed packages' descriptions."""

    def everywhere(text: str) -> str:
        text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
        return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()

    assert normalise("a \t\r\n\r\n\r\n\r\nb  \nc\t\n\n\n") == "a\n\nb\nc"
    assert normalise("e\u0301 \r\r\r x") == "\u00e9\n\n x"
    assert normalise("plain text\nno trailing space") == "plain text\nno trailing space"
    assert normalise("only a tab\t\nbefore a newline") == "only a tab\nbefore a newline"
    site = Path(sysconfig.get_paths()["purelib"])
    texts = [
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(site.glob("*.dist-info/METADATA"))
    ]
    cases = (
        texts + [t.replace("\n", " \n") for t in texts[:20]] + [t.replace("\n", "\r\n") for t in texts[:20]]
    )
    assert len(texts) > 50 and all(normalise(t) == everywhere(t) for t in cases)
