"""Reruns do exactly the work that changed: edits, deletions, shared text, hostile files."""

from __future__ import annotations

from pathlib import Path

import psycopg
import yaml

from ragline.config import load_settings
from tests.conftest import checks, counts, local_embedder, metadata, run

HANDBOOK = ["handbook/paid-time-off.md", "handbook/meeting-norms.md", "handbook/benefits.md"]


def _hashes(url: str, doc_id: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.text_hash FROM ragline.serving_chunks s JOIN ragline.chunks c USING (chunk_id) "
            "WHERE s.doc_id = %s",
            (doc_id,),
        )
        return {r[0] for r in rows}


def test_editing_one_document_embeds_only_its_changed_chunks(project, db_url):
    settings = project({"docs": HANDBOOK})
    run(settings)
    before = counts(db_url)
    old = _hashes(db_url, "paid-time-off.md")
    path = settings.source("docs").root / "paid-time-off.md"
    text = path.read_text()
    # Change one sentence in one section; the other sections' chunks keep their text.
    marker = "## "
    first_section = text.index(marker)
    second_section = text.index(marker, first_section + 1)
    edited = (
        text[:second_section]
        + "Leave requests now go through the Workday portal.\n\n"
        + text[second_section:]
    )
    path.write_text(edited)

    embedder = local_embedder()
    calls = embedder.calls
    result = run(settings)["source docs"]
    new = _hashes(db_url, "paid-time-off.md")
    changed_texts = new - old

    emb = metadata(result, "embeddings")
    assert metadata(result, "raw_documents")["changed"] == 1
    assert metadata(result, "raw_documents")["unchanged"] == 2
    assert 1 <= len(changed_texts) < len(new)
    assert emb["chunks_embedded"] == len(changed_texts) == embedder.calls - calls
    after = counts(db_url)
    assert after["document_versions"] == before["document_versions"] + 1
    assert after["embeddings"] == before["embeddings"] + len(changed_texts)
    assert after["serving_chunks"] == before["serving_chunks"] - len(old) + len(new)
    assert all(checks(result).values())


def test_deleting_a_document_removes_it_from_serving(project, db_url):
    settings = project({"docs": HANDBOOK})
    run(settings)
    assert _hashes(db_url, "meeting-norms.md")
    (settings.source("docs").root / "meeting-norms.md").unlink()

    result = run(settings)["source docs"]

    assert metadata(result, "raw_documents")["deleted"] == 1
    assert _hashes(db_url, "meeting-norms.md") == set()
    with psycopg.connect(db_url) as conn:
        status, deleted_at = conn.execute(
            "SELECT status, deleted_at FROM ragline.documents WHERE doc_id = 'meeting-norms.md'"
        ).fetchone()
        versions = conn.execute(
            "SELECT count(*) FROM ragline.document_versions WHERE doc_id = 'meeting-norms.md'"
        ).fetchone()[0]
    assert status == "deleted" and deleted_at is not None
    assert versions == 1  # history is kept, only serving changes
    assert all(checks(result).values())


def test_a_shared_paragraph_is_embedded_once(tmp_path, db_url):
    from tests.conftest import write_project

    shared = (
        "## Security contacts\n\nReport a suspected phishing email to security@tidewater.example "
        "within one hour, and do not forward it to colleagues or click any links in it."
    )
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text(
        f"# Travel\n\nBook flights through Navan at least 14 days ahead.\n\n{shared}\n"
    )
    (root / "b.md").write_text(f"# Laptops\n\nLaptops are refreshed every three years by IT.\n\n{shared}\n")
    settings = write_project(
        tmp_path, [{"name": "docs", "root": "corpus", "chunking": {"strategy": "markdown"}}]
    )

    result = run(settings)["source docs"]

    with psycopg.connect(db_url) as conn:
        chunk_rows = conn.execute("SELECT count(*), count(DISTINCT text_hash) FROM ragline.chunks").fetchone()
        shared_chunks = conn.execute(
            "SELECT count(*), count(DISTINCT text_hash) FROM ragline.chunks WHERE text LIKE '%%phishing%%'"
        ).fetchone()
    assert shared_chunks == (2, 1)
    assert metadata(result, "embeddings")["chunks_embedded"] == chunk_rows[1] == chunk_rows[0] - 1
    assert counts(db_url)["embeddings"] == chunk_rows[1]


def test_hostile_files_are_quarantined_and_nothing_stored_is_lost(project, db_url):
    settings = project({"docs": HANDBOOK})
    run(settings)
    before = counts(db_url)
    root: Path = settings.source("docs").root
    long_text = "Expense reports are due within 30 days. " * 40
    (root / "photo.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (root / "latin1.md").write_bytes("Caf\xe9 opening hours are 8 to 5.".encode("latin-1"))
    (root / "nul.md").write_bytes(long_text.encode() + b"\x00" + long_text.encode())
    (root / "empty.md").write_bytes(b"")
    (root / "huge.md").write_text("# Big\n\n" + "word " * 2_000_000)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated")
    # A file that was good and turns corrupt keeps its last good version in serving.
    served_before = _hashes(db_url, "benefits.md")
    (root / "benefits.md").write_bytes(b"# Benefits\n\nExported from \xff\xfe the old wiki")

    result = run(settings)["source docs"]

    with psycopg.connect(db_url) as conn:
        reasons = dict(conn.execute("SELECT path, reason FROM ragline.quarantine"))
        details = dict(conn.execute("SELECT path, detail FROM ragline.quarantine"))
    assert reasons == {
        "photo.md": "binary_file",
        "latin1.md": "invalid_utf8",
        "nul.md": "nul_bytes",
        "empty.md": "empty_file",
        "huge.md": "too_large",
        "broken.pdf": "corrupt_pdf",
        "benefits.md": "invalid_utf8",
    }
    assert "offset" in details["nul.md"] and "limit" in details["huge.md"]
    docs = metadata(result, "raw_documents")
    assert docs["quarantined"] == 7 and docs["deleted"] == 0
    assert result.success and all(checks(result).values())
    after = counts(db_url)
    for table in ("documents", "document_versions", "chunks", "embeddings", "serving_chunks"):
        assert after[table] == before[table], table
    assert _hashes(db_url, "benefits.md") == served_before

    # Re-running with the same bad files records nothing twice.
    run(settings)
    assert counts(db_url) == after

    # Fixing the files clears them from quarantine and loads them.
    for name in ("photo.md", "latin1.md", "nul.md", "empty.md", "huge.md", "broken.pdf"):
        (root / name).unlink()
    (root / "benefits.md").write_text("# Benefits\n\nHealth cover starts on your first day.\n")
    result = run(settings)["source docs"]
    assert counts(db_url)["quarantine"] == 0
    assert metadata(result, "raw_documents")["changed"] == 1


def test_recall_check_fails_on_a_degraded_index(project, db_url):
    good = project({"docs": HANDBOOK})
    assert all(checks(run(good)["search index"]).values())

    # m=2 with ef_search=1: the graph search returns one neighbour where ten are asked for.
    config = yaml.safe_load(good.path.read_text())
    config["index"].update(hnsw_m=2, hnsw_ef_construction=4, ef_search=1)
    good.path.write_text(yaml.safe_dump(config))
    degraded = load_settings(good.path)
    result = run(degraded)["search index"]

    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed is False
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["recall_at_10"] < 0.95 and meta["index_used"] is True
    assert not result.success  # blocking: the run fails, downstream would not run
    assert metadata(result, "search_index")["hnsw_built"] is True  # rebuilt with the new settings
