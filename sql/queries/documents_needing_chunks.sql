-- Live documents of a source with no chunks under this chunker, in doc_id order, for a cursor that
-- rechunk_source reads while it writes chunks. The "no chunks" test is a set difference, which
-- reads each side once (sorted or hashed): written as NOT EXISTS it was planned, on tables without
-- statistics yet (a first build), as a scan of all the source's chunks per document, including the
-- ones this run had just written: quadratic (50,000 documents did not finish in 20 minutes).
WITH pending AS (
    SELECT doc_id, version FROM ragline.documents WHERE source = %(source)s AND status = 'live'
    EXCEPT
    SELECT doc_id, doc_version FROM ragline.chunks WHERE source = %(source)s AND chunker = %(chunker)s
)
SELECT p.doc_id, p.version, v.content_hash, v.text
FROM pending p
JOIN ragline.document_versions v ON v.source = %(source)s AND v.doc_id = p.doc_id AND v.version = p.version
ORDER BY p.doc_id
