"""Hostile input: every file or line is loaded (made safe for Postgres) or quarantined with its
reason; no input fails its source, documents keep their identity, and the good files are served."""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import psycopg
import pytest

from ragline.config import JsonlSettings, PdfSettings, SourceSettings
from ragline.ingest.chunk_store import rechunk_source
from ragline.ingest.chunking import Chunker
from ragline.ingest.documents import WRITE_BATCH, store_scan
from ragline.ingest.sources import Document, ScanResult, file_id, scan_source, stream_source
from ragline.storage.db import Database
from ragline.types import DatabaseError, SourceError
from tests.conftest import EXAMPLES, checks, local_embedder, metadata, run, write_project

GOOD_TEXT = "# Refunds\n\nCustomers may return hardware within thirty days for a full refund.\n"


def make_pdf(
    contents: list[bytes], title: bytes | None = None, repeat: int = 1, compress: bool = False
) -> bytes:
    """A minimal PDF written by hand: one page per content stream, each page repeated `repeat`
    times (the pages share the stream)."""
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    n, kids = 4, []
    for content in contents:
        data = zlib.compress(content, 9) if compress else content
        flate = b" /Filter /FlateDecode" if compress else b""
        objs[n] = b"<< /Length %d%s >>\nstream\n" % (len(data), flate) + data + b"\nendstream"
        stream, n = n, n + 1
        for _ in range(repeat):
            objs[n] = (
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                b"/Resources << /Font << /F1 3 0 R >> >> >>" % stream
            )
            kids.append(n)
            n += 1
    objs[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = b""
    if title is not None:
        objs[n] = b"<< /Title " + title + b" >>"
        info, n = b" /Info %d 0 R" % n, n + 1
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for i in sorted(objs):
        offsets[i] = len(out)
        out += b"%d 0 obj\n" % i + objs[i] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % n + b"".join(
        b"%010d 00000 n \n" % offsets[i] for i in range(1, n)
    )
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (n, info, xref)
    return bytes(out)


def _text_pdf(text: bytes, title: bytes | None = None) -> bytes:
    return make_pdf([b"BT /F1 12 Tf 72 700 Td (" + text + b") Tj ET"], title=title)


# A PDF pypdf needs about an hour for: 1,000 pages sharing one content stream of 100,000 text
# operators (157 KB on disk).
def _hanging_pdf() -> bytes:
    ops = b"BT /F1 12 Tf 72 700 Td " + b"(x) Tj " * 100_000 + b"ET"
    return make_pdf([ops], repeat=1000, compress=True)


def _line(record: dict) -> str:
    return json.dumps(record)


def _hostile_corpus(base: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """Files and JSON lines under base/corpus, each case with what must become of it: ("loaded",
    doc_id) or (reason, quarantine path)."""
    root, outside = base / "corpus", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe outside secret is swordfish.\n")
    (root / "refunds.md").write_text(GOOD_TEXT)
    (root / "warranty.pdf").write_bytes(_text_pdf(b"Warranty: every laptop is covered for three years."))
    cases: dict[str, tuple[str, str]] = {}

    # JSON Lines: one case a line.
    deep = "[" * 100_000 + "]" * 100_000
    lines = [
        ("json_nul_escaped", _line({"id": "nul", "text": "Escaped\u0000 NUL in text", "tag": "a\u0000b"})),
        ("json_lone_surrogate", '{"id": "sur", "text": "lone \\ud800 surrogate", "tag": "x\\udfffy"}'),
        ("json_nan_infinity", '{"id": "nan", "text": "not a number", "score": NaN, "tag": -Infinity}'),
        ("json_5000_digit_int", '{"id": "big", "text": "a big number", "score": ' + "7" * 5000 + "}"),
        ("json_100k_deep", '{"id": "deep", "text": "deep", "tag": ' + deep + "}"),
        ("json_u2028_in_string", '{"id": "sep", "text": "line\u2028separator inside a string"}'),
        ("json_long_id", _line({"id": "L" * 3000, "text": "a record with a very long id"})),
        ("json_zero_width_text", _line({"id": "zw", "text": "\u200b\u200c\u200d\ufeff"})),
        ("json_duplicate_id", _line({"id": "nul", "text": "the same id again"})),
    ]
    (root / "records.jsonl").write_text("\n".join(text for _, text in lines) + "\r\n")
    expect = {
        "json_nul_escaped": ("loaded", "records.jsonl#nul"),
        "json_lone_surrogate": ("loaded", "records.jsonl#sur"),
        "json_nan_infinity": ("loaded", "records.jsonl#nan"),
        "json_5000_digit_int": ("loaded", "records.jsonl#big"),
        "json_100k_deep": ("too_deep", "records.jsonl:5"),
        "json_u2028_in_string": ("loaded", "records.jsonl#sep"),
        "json_long_id": ("loaded", "records.jsonl%!"),  # prefix of a hashed id
        "json_zero_width_text": ("empty_text", "records.jsonl:8"),
        "json_duplicate_id": ("duplicate_id", "records.jsonl:9"),
    }
    cases.update(expect)

    # The same name as a record id: `coll.jsonl#7.md` (a file) and record 7.md of coll.jsonl.
    (root / "coll.jsonl").write_text(_line({"id": "7.md", "text": "Record seven of the collection."}) + "\n")
    (root / "coll.jsonl#7.md").write_text("# File seven\n\nA file whose name looks like a record id.\n")
    cases["id_collision_record"] = ("loaded", "coll.jsonl#7.md")
    cases["id_collision_file"] = ("loaded", "%~coll.jsonl%237.md")

    (root / "a:b.md").write_text("# Colon\n\nA document whose name holds a colon.\n")
    cases["colon_in_name"] = ("loaded", "a:b.md")

    # NUL inside PDF text and a PDF title (UTF-16 with a NUL); a PDF that hangs the parser.
    title = b"<FEFF00480061006E006400000062006F006F006B>"
    (root / "nul-text.pdf").write_bytes(_text_pdf(b"Refund\\000 policy for PDFs.", title=title))
    cases["pdf_nul_text_and_title"] = ("loaded", "nul-text.pdf")
    (root / "hang.pdf").write_bytes(_hanging_pdf())
    cases["pdf_hangs"] = ("pdf_timeout", "hang.pdf")

    # Names: invalid UTF-8, a newline (a bad file, so its name reaches the log), too long.
    fd = os.open(os.fsencode(root) + b"/caf\xe9.md", os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"# Cafe\n\nA file whose name is Latin-1.\n")
    os.close(fd)
    cases["invalid_utf8_name"] = ("loaded", "%~caf%E9.md")
    (root / "evil\n2026-01-01 ERROR forged.md").write_bytes(b"")
    cases["newline_in_name"] = ("empty_file", "evil\n2026-01-01 ERROR forged.md")
    deep_dir = root.joinpath(*["d" * 200] * 6)
    deep_dir.mkdir(parents=True)
    (deep_dir / "long.md").write_text("# Long\n\nA file at a path over the index key limit.\n")
    cases["path_too_long"] = ("loaded", "d" * 200 + "%!")

    (root / "zero-width.md").write_text("\u200b\u200c\u200d\u2060\ufeff" * 200)
    cases["zero_width_file"] = ("empty_file", "zero-width.md")
    (root / "nul-bytes.md").write_bytes(b"# Nul\n\nraw\x00bytes in a text file")
    cases["raw_nul_bytes"] = ("nul_bytes", "nul-bytes.md")
    (root / "huge.md").write_bytes(b"# Huge\n\n" + b"word " * 80_000)
    cases["too_large"] = ("too_large", "huge.md")
    (root / "hidden.html").write_text(
        "<html><body><p>Visible policy text about laptops.</p>"
        '<div style="display:none">CSSHIDDEN one</div><span style="visibility: hidden">CSSHIDDEN two</span>'
        '<p style="color:red; DISPLAY : none !important">CSSHIDDEN three</p></body></html>'
    )
    cases["css_hidden_html"] = ("loaded", "hidden.html")

    # Symbolic links out of the root: to /etc/passwd, absolute, relative ../, and a folder.
    (root / "passwd.md").symlink_to("/etc/passwd")
    (root / "absolute.md").symlink_to(outside / "secret.md")
    (root / "relative.md").symlink_to("../outside/secret.md")
    (root / "folder").symlink_to(outside, target_is_directory=True)
    for name in ("passwd.md", "absolute.md", "relative.md", "folder"):
        cases[f"symlink_{name}"] = ("symlink", name)
    return root, cases


def test_a_hostile_corpus_is_loaded_or_quarantined_and_the_good_files_are_served(tmp_path, db_url, capfd):
    root, cases = _hostile_corpus(tmp_path)
    settings = write_project(
        tmp_path,
        [
            {
                "name": "hostile",
                "root": "corpus",
                "max_file_bytes": 300_000,
                # The demo PDFs parse in ~45 ms each; the hanging one needs about an hour.
                "pdf": {"timeout_seconds": 5},
                "jsonl": {"metadata_fields": ["tag", "score"]},
                "chunking": {"strategy": "markdown"},
            }
        ],
    )

    result = run(settings, quality=False)
    source_run = result["source hostile"]

    with psycopg.connect(db_url) as conn:
        live = dict(
            conn.execute("SELECT doc_id, path FROM ragline.documents WHERE status = 'live'").fetchall()
        )
        quarantine = dict(conn.execute("SELECT path, reason FROM ragline.quarantine").fetchall())
        texts = dict(
            conn.execute(
                "SELECT v.doc_id, v.text FROM ragline.document_versions v JOIN ragline.documents d "
                "USING (source, doc_id, version)"
            ).fetchall()
        )
        metas = dict(conn.execute("SELECT doc_id, metadata FROM ragline.document_versions").fetchall())
        details = dict(conn.execute("SELECT path, detail FROM ragline.quarantine").fetchall())

    handled = {}
    for case, (outcome, key) in cases.items():
        if outcome == "loaded":
            handled[case] = any(d == key or (key.endswith("%!") and d.startswith(key)) for d in live)
        else:
            handled[case] = quarantine.get(key) == outcome
    share = sum(handled.values()) / len(handled)
    failed = [name for name, r in result.items() if not r.success]
    failed_checks = [k for r in result.values() for k, ok in checks(r).items() if not ok]
    with capfd.disabled():
        print(
            f"\nhostile corpus: {len(handled)} cases, {sum(handled.values())} loaded or quarantined "
            f"with their reason ({share:.0%}), {len(failed)} failed runs, {len(failed_checks)} failed checks"
        )
    assert {case for case, ok in handled.items() if not ok} == set()
    assert failed == [] and failed_checks == []

    # What was loaded is safe and clean.
    assert texts["records.jsonl#nul"] == "Escaped NUL in text" and metas["records.jsonl#nul"]["tag"] == "ab"
    assert texts["records.jsonl#sur"] == "lone \ufffd surrogate"
    assert metas["records.jsonl#nan"] == {"format": "jsonl", "record_id": "nan", "score": None, "tag": None}
    assert metas["records.jsonl#big"]["score"] == "7" * 5000
    assert "\u2028" in texts["records.jsonl#sep"]
    assert texts["nul-text.pdf"] == "Refund policy for PDFs." and metas["nul-text.pdf"]["title"] == "Handbook"
    assert texts["hidden.html"] == "Visible policy text about laptops."
    assert live["%~caf%E9.md"] == "%~caf%E9.md"
    assert live["%~coll.jsonl%237.md"] == "coll.jsonl#7.md" and live["coll.jsonl#7.md"] == "coll.jsonl"
    assert "swordfish" not in " ".join(texts.values()) and "root:" not in " ".join(texts.values())
    assert all(len(k.encode()) <= 1000 for k in [*live, *quarantine])
    assert "first" not in details["records.jsonl:9"] and "records.jsonl:1" in details["records.jsonl:9"]
    assert metadata(source_run, "raw_documents")["deleted"] == 0

    # The file name with a newline cannot forge a log line.
    err = capfd.readouterr().err
    assert "evil\\n2026-01-01 ERROR forged.md" in err
    assert not any(line.startswith("2026-01-01 ERROR forged") for line in err.splitlines())

    # The good files are served.
    from ragline.retrieval.search import build_retriever

    with Database(db_url, max_size=2) as db:
        retriever = build_retriever(settings, db, local_embedder(), log_queries=False)
        found = {h.doc_id for h in retriever.search("return hardware within thirty days for a refund").hits}
        assert "refunds.md" in found
        found = {h.doc_id for h in retriever.search("laptop covered for three years warranty").hits}
        assert "warranty.pdf" in found

    # Second run: a:b.md turns bad, and a record is inserted at the top of records.jsonl.
    (root / "a:b.md").write_bytes(b"# Colon\n\n\xff\xfe broken export")
    records = (root / "records.jsonl").read_text()
    (root / "records.jsonl").write_text(_line({"id": "top", "text": "A new first record."}) + "\n" + records)

    again = run(settings, quality=False)
    docs = metadata(again["source hostile"], "raw_documents")
    assert all(r.success for r in again.values()) and all(all(checks(r).values()) for r in again.values())
    assert (docs["new"], docs["changed"], docs["deleted"]) == (1, 0, 0)  # the moved lines keep their version
    with psycopg.connect(db_url) as conn:
        status = conn.execute("SELECT status FROM ragline.documents WHERE doc_id = 'a:b.md'").fetchone()[0]
        reason = conn.execute("SELECT reason FROM ragline.quarantine WHERE path = 'a:b.md'").fetchone()[0]
        deep = conn.execute("SELECT path FROM ragline.quarantine WHERE reason = 'too_deep'").fetchone()[0]
    assert (status, reason) == ("live", "invalid_utf8")  # keeps its last good version
    assert deep == "records.jsonl:6"  # quarantine names the line where it is now


@pytest.fixture
def conn(db_url):
    with Database(db_url, max_size=1) as db, db.connection() as connection:
        yield connection


def test_a_bad_line_protects_only_its_own_record(tmp_path, conn):
    source = SourceSettings(name="s", root=tmp_path)
    path = tmp_path / "t.jsonl"
    rows = [_line({"id": f"r{i}", "text": f"Record number {i}."}) for i in range(4)]
    path.write_text("\n".join(rows) + "\n")
    (tmp_path / "keep.md").write_text("# Keep\n\nkept")
    first = store_scan(conn, "s", scan_source(source))
    assert first.new == 5

    # r1's line breaks but still names r1; r2 is removed; r3's line loses its id.
    path.write_text("\n".join([rows[0], '{"id": "r1", "text": "cut', '{"text": "Record number 3."}']) + "\n")
    stats = store_scan(conn, "s", scan_source(source))
    status = dict(conn.execute("SELECT doc_id, status FROM ragline.documents").fetchall())
    assert status == {
        "t.jsonl#r0": "live",
        "t.jsonl#r1": "live",  # its bad line names it
        "t.jsonl#r2": "deleted",  # gone, although a line of its file is bad
        "t.jsonl#r3": "deleted",  # a parsed line without an id names no record
        "keep.md": "live",
    }
    assert stats.deleted == 2

    # A line that does not parse and names no record may be any record: the file's are kept.
    path.write_text(rows[0] + "\n{broken\n")
    # (r1 was live; make it vanish behind an unreadable line)
    store_scan(conn, "s", scan_source(source))
    status = dict(conn.execute("SELECT doc_id, status FROM ragline.documents").fetchall())
    assert status["t.jsonl#r1"] == "live"


def test_an_install_from_before_keeps_its_jsonl_versions(conn):
    """Hashes stored while the line number was in the metadata count as unchanged, and are
    rewritten to the new formula without a new version."""
    spec = JsonlSettings(id_field="ticket_id", text_fields=("subject", "body"), metadata_fields=("priority",))
    source = SourceSettings(name="support", root=EXAMPLES / "support", glob="*.jsonl", jsonl=spec)
    scan = scan_source(source)
    # What the previous release stored: the same documents with "line" in their metadata.
    before = ScanResult(
        [Document(d.doc_id, d.path, d.text, {"line": d.line, **d.metadata}) for d in scan.documents],
        [],
        scan.files_seen,
    )
    assert store_scan(conn, "support", before).new == 10

    upgraded = store_scan(conn, "support", scan)
    again = store_scan(conn, "support", scan_source(source))

    assert (upgraded.unchanged, upgraded.written) == (10, 0)
    assert (again.unchanged, again.written) == (10, 0)
    hashes = dict(conn.execute("SELECT doc_id, content_hash FROM ragline.documents").fetchall())
    versions = conn.execute("SELECT count(*) FROM ragline.document_versions").fetchone()[0]
    assert versions == 10 and hashes == {d.doc_id: d.content_hash for d in scan.documents}


def test_symlinks_are_followed_only_on_request_and_only_inside_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "doc.md").write_text("# Doc\n\ninside")
    (outside / "secret.md").write_text("# Secret\n\nswordfish")
    (root / "inside.md").symlink_to("real/doc.md")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "passwd.md").symlink_to("/etc/passwd")
    (root / "up.md").symlink_to("../outside/secret.md")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "loop.md").symlink_to("loop.md")

    plain = scan_source(SourceSettings(name="s", root=root))
    followed = scan_source(SourceSettings(name="s", root=root, follow_symlinks=True))

    assert [d.doc_id for d in plain.documents] == ["real/doc.md"]
    assert {(r.path, r.reason) for r in plain.rejections} == {
        (name, "symlink") for name in ("inside.md", "alias", "passwd.md", "up.md", "out", "loop.md")
    }
    assert sorted(d.doc_id for d in followed.documents) == ["alias/doc.md", "inside.md", "real/doc.md"]
    assert {(r.path, r.reason) for r in followed.rejections} == {
        *((name, "outside_root") for name in ("passwd.md", "up.md", "out")),
        ("loop.md", "broken_symlink"),
    }


def test_a_link_out_of_the_root_stops_serving_what_it_once_served(tmp_path, conn):
    """Before links were refused, /etc/passwd behind passwd.md could be loaded: the quarantine of
    the link must not keep that document live (a policy rejection protects nothing)."""
    (tmp_path / "keep.md").write_text("# Keep\n\nkept")
    served = scan_source(SourceSettings(name="s", root=tmp_path))
    served.documents.append(Document("passwd.md", "passwd.md", "root:x:0:0:root:/root:/bin/bash", {}))
    assert store_scan(conn, "s", served).new == 2
    (tmp_path / "passwd.md").symlink_to("/etc/passwd")

    stats = store_scan(conn, "s", scan_source(SourceSettings(name="s", root=tmp_path)))

    status = dict(conn.execute("SELECT doc_id, status FROM ragline.documents").fetchall())
    assert status == {"keep.md": "live", "passwd.md": "deleted"} and stats.deleted == 1


def test_ordinary_names_keep_their_ids_and_no_file_id_is_a_record_id(tmp_path):
    """Ids from before stay (names with % and # included); only a name that could be read as a
    record id, a non-UTF-8 name or one starting with the escape mark is escaped."""
    assert [file_id(n) for n in ("a.md", "50%.md", "notes#1.md", "x%23y.md")] == [
        "a.md",
        "50%.md",
        "notes#1.md",
        "x%23y.md",
    ]
    assert file_id("coll.jsonl#7.md") == "%~coll.jsonl%237.md"
    assert file_id("d/C.NDJSON#x") == "%~d/C.NDJSON%23x"
    assert file_id("%~a.md") == "%~%25~a.md"
    for name in ("50%.md", "notes#1.md", "coll.jsonl#7.md", "%~a.md"):
        (tmp_path / name).write_text(f"# {name}\n\ntext of {name}")
    (tmp_path / "coll.jsonl").write_text(_line({"id": "7.md", "text": "record"}) + "\n")
    ids = sorted(d.doc_id for d in scan_source(SourceSettings(name="s", root=tmp_path)).documents)
    assert ids == ["%~%25~a.md", "%~coll.jsonl%237.md", "50%.md", "coll.jsonl#7.md", "notes#1.md"]


def test_pdf_limits_quarantine_the_pdf(tmp_path):
    policy = (EXAMPLES / "policies" / "acceptable-use-policy.pdf").read_bytes()
    (tmp_path / "policy.pdf").write_bytes(policy)
    # A decompression bomb: one content stream of 42 MB in 82 KB.
    bomb = make_pdf([b"BT /F1 12 Tf 72 700 Td " + b"(abcdefgh) Tj " * 3_000_000 + b"ET"], compress=True)
    (tmp_path / "bomb.pdf").write_bytes(bomb)

    capped = scan_source(
        SourceSettings(name="s", root=tmp_path, pdf=PdfSettings(max_pages=2, max_memory_mb=128))
    )

    assert {(r.path, r.reason) for r in capped.rejections} == {
        ("policy.pdf", "too_many_pages"),
        ("bomb.pdf", "pdf_memory_limit"),
    }
    [loaded] = scan_source(SourceSettings(name="s", root=tmp_path, glob="policy.pdf")).documents
    assert loaded.metadata["pages"] >= 3


def test_a_document_without_chunks_is_quarantined_not_a_failed_check(tmp_path, conn):
    from ragline import expectations

    # Visible to the loader, nothing to the tokenizer: a text that yields no chunk.
    scan = ScanResult(
        [
            Document("marks.md", "marks.md", "\u0300\u0301 \u0302", {"format": "markdown"}),
            Document("ok.md", "ok.md", "Laptops are refreshed every three years.", {"format": "markdown"}),
        ],
        [],
        2,
    )
    model = local_embedder()
    settings = SourceSettings(name="s", root=tmp_path)
    store_scan(conn, "s", scan)
    stats = rechunk_source(conn, "s", Chunker(settings.chunking, model.tokenizer))
    outcomes = expectations.check_chunks(conn, "s", settings.chunking)
    assert stats.documents_quarantined == 1 and all(o.passed for o in outcomes)
    again = store_scan(conn, "s", scan)  # not restored while its content is the same
    reason = conn.execute("SELECT reason FROM ragline.quarantine WHERE path = 'marks.md'").fetchone()
    status = conn.execute("SELECT status FROM ragline.documents WHERE doc_id = 'marks.md'").fetchone()
    assert again.restored == 0 and reason == ("no_chunks",) and status == ("deleted",)


@pytest.mark.parametrize(
    "style",
    ["display:none", "display: none !important", "VISIBILITY:hidden", "color:red;visibility:collapse"],
)
def test_css_hidden_text_is_dropped(style):
    from ragline.ingest.sources import html_to_text

    _, text = html_to_text(f'<p>shown</p><div style="{style}">secret <b>bold</b></div><p>after</p>')
    assert text == "shown\n\nafter"


def test_text_hidden_by_the_pages_own_stylesheet_is_dropped():
    from ragline.ingest.sources import html_to_text

    page = (
        "<html><head><style>/* a comment */ .sr, div#promo {display : none /* why */ !important}"
        " .red {color: red} span.gone, .also{visibility:hidden}</style></head><body>"
        '<p class="lead sr">secret class</p><div id="promo">secret id</div><p class="red">shown</p>'
        '<span class="gone">secret span</span><p class="also">secret too</p>'
        '<p style="display:none/**/">secret commented</p><p>after</p></body></html>'
    )
    assert html_to_text(page)[1] == "shown\n\nafter"


def test_any_loader_exception_quarantines_its_file_and_the_rest_loads(tmp_path, monkeypatch):
    """The catch-all: a parser bug nobody foresaw (here RecursionError) costs one file, named."""
    import ragline.ingest.sources as sources

    def explode(_html):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(sources, "html_to_text", explode)
    (tmp_path / "page.html").write_text("<p>x</p>")
    (tmp_path / "fine.md").write_text("# Fine\n\nstill loads")
    scan = scan_source(SourceSettings(name="s", root=tmp_path))
    assert [d.doc_id for d in scan.documents] == ["fine.md"]
    [rejection] = scan.rejections
    assert (rejection.path, rejection.reason) == ("page.html", "loader_error")
    assert rejection.detail.startswith("RecursionError: maximum recursion depth")


def test_a_version_another_writer_stored_with_other_text_is_refused_whole(tmp_path, conn):
    source = SourceSettings(name="s", root=tmp_path)
    (tmp_path / "a.md").write_text("# A\n\nThe first text.")
    assert store_scan(conn, "s", scan_source(source)).new == 1
    # Version 2 of a.md already holds another text (a writer that bypassed the source lock).
    conn.execute(
        "INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text, metadata,"
        " char_count) VALUES ('s', 'a.md', 2, 'other', 'other', '{}', 5)"
    )
    (tmp_path / "a.md").write_text("# A\n\nThe second text.")
    (tmp_path / "b.md").write_text("# B\n\nA new document.")
    with pytest.raises(DatabaseError, match=r"s:a\.md version 2 is already stored with another text"):
        store_scan(conn, "s", scan_source(source))
    rows = conn.execute("SELECT doc_id, version FROM ragline.documents ORDER BY doc_id").fetchall()
    assert rows == [("a.md", 1)]  # nothing of the refused scan, not even the new document


def test_a_streamed_scan_is_written_as_it_loads_not_held_until_the_end(tmp_path, conn):
    """raw_documents stores a source while its files load, WRITE_BATCH documents at a time, so a
    source's whole text is never in memory at once; rejections still count once the scan is read."""
    n = 2 * WRITE_BATCH + 7
    for i in range(n):
        (tmp_path / f"doc{i:04d}.md").write_text(f"# Doc {i}\n\nBody of document number {i}.\n")
    (tmp_path / "doc0300.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))  # quarantined, mid-scan
    source = SourceSettings(name="s", root=tmp_path)
    stored_while_loading: list[int] = []

    def watched(scan: ScanResult):
        for i, doc in enumerate(scan.documents):
            if i == n - 2:  # the last document is still to load
                count = "SELECT count(*) FROM ragline.document_versions WHERE source = 's'"
                stored_while_loading.append(conn.execute(count).fetchone()[0])
            yield doc

    scan = stream_source(source)
    stats = store_scan(conn, "s", ScanResult(watched(scan), scan.rejections, 0))
    assert stored_while_loading == [2 * WRITE_BATCH]
    assert (stats.new, stats.quarantined, stats.quarantine_reasons) == (n - 1, 1, {"binary_file": 1})
    assert stats.live_documents == n - 1
    streamed = stream_source(source)
    again = store_scan(conn, "s", streamed)
    assert (again.new, again.unchanged, again.deleted, again.quarantined) == (0, n - 1, 0, 1)
    assert again.files_seen == n
    # Read a second time, a streamed scan would find nothing and delete every document: refused.
    with pytest.raises(SourceError, match="read only once"):
        store_scan(conn, "s", streamed)
    # A root that is gone by the time the store reads it (it may wait for the source's lock).
    waiting = stream_source(source)
    shutil.rmtree(tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        store_scan(conn, "s", waiting)
    live = "SELECT count(*) FROM ragline.documents WHERE source = 's' AND status = 'live'"
    assert conn.execute(live).fetchone()[0] == n - 1


def test_chunking_a_fresh_source_reads_each_chunk_index_entry_a_bounded_number_of_times(tmp_path, db_url):
    """rechunk_source reads the documents to chunk through a cursor while it writes their chunks.
    On a first build (no table statistics yet) its "has no chunks" test was planned as a scan of
    all the source's chunks per document, the ones just written included: quadratic, 50,000
    documents did not finish in 20 minutes. Counted by PostgreSQL's own index statistics."""
    n = 400
    for i in range(n):
        (tmp_path / f"d{i:03d}.md").write_text(f"# Note {i}\n\nA short note, number {i}, about refunds.\n")
    source = SourceSettings(name="s", root=tmp_path)
    with psycopg.connect(db_url, autocommit=True) as conn:
        store_scan(conn, "s", scan_source(source))
        stats = rechunk_source(conn, "s", Chunker(source.chunking, local_embedder().tokenizer))
        conn.execute("SELECT pg_stat_force_next_flush()")  # the counts are shared before this returns
    assert stats.chunks_added >= n
    with psycopg.connect(db_url, autocommit=True) as conn:
        read = conn.execute(
            "SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes "
            "WHERE schemaname = 'ragline' AND relname = 'chunks'"
        ).fetchone()[0]
    assert read <= 4 * stats.chunks_added, f"{read} chunk index entries read for {stats.chunks_added} chunks"


def pdf_workers() -> list[int]:
    """This process's PDF parser processes (ragline/ingest/pdf_worker.py), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"pdf_worker.py" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the parser process in /proc")
def test_a_store_that_fails_mid_scan_stops_the_pdf_parser_and_keeps_nothing(tmp_path, conn):
    """A streamed scan's PDF parser process lives while the store reads the scan; when the store
    fails (here the first write of documents, after the PDF was parsed), the process is stopped
    at once, not whenever the suspended generator happens to be collected, and the transaction
    keeps nothing."""
    (tmp_path / "a.pdf").write_bytes(_text_pdf(b"Refunds take thirty days."))
    for i in range(WRITE_BATCH + 3):
        (tmp_path / f"doc{i:04d}.md").write_text(f"# Doc {i}\n\nBody of document number {i}.\n")
    conn.execute(
        "CREATE FUNCTION public.refuse_versions() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the store fails here'; END $$"
    )
    conn.execute(
        "CREATE TRIGGER refuse_versions BEFORE INSERT ON ragline.document_versions "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_versions()"
    )
    source = SourceSettings(name="s", root=tmp_path)
    scan = stream_source(source)
    parsed: list[int] = []

    def watched(scan: ScanResult):
        for doc in scan.documents:
            if doc.doc_id.endswith(".pdf"):
                parsed.extend(pdf_workers())  # the parser is running while the scan is read
            yield doc

    documents = watched(scan)  # held here, so that only store_scan's closing of it can end it
    with pytest.raises(psycopg.errors.RaiseException, match="the store fails here"):
        store_scan(conn, "s", ScanResult(documents, scan.rejections, 0))
    assert len(parsed) == 1
    assert documents.gi_frame is None  # closed by store_scan, not left suspended
    assert pdf_workers() == []
    assert conn.execute("SELECT count(*) FROM ragline.documents WHERE source = 's'").fetchone()[0] == 0
    conn.execute("DROP TRIGGER refuse_versions ON ragline.document_versions")
    stats = store_scan(conn, "s", stream_source(source))
    assert stats.new == WRITE_BATCH + 4 and pdf_workers() == []
