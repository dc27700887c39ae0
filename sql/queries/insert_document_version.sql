-- Returns the hash stored under this version: the new row's, or the existing row's on a conflict,
-- so that the caller refuses a version that already holds another text instead of dropping its own.
WITH inserted AS (
    INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text, metadata, char_count)
    VALUES (%(source)s, %(doc_id)s, %(version)s, %(content_hash)s, %(text)s, %(metadata)s, %(char_count)s)
    ON CONFLICT (source, doc_id, version) DO NOTHING
    RETURNING content_hash
)
SELECT content_hash FROM inserted
UNION ALL
SELECT v.content_hash FROM ragline.document_versions v
WHERE v.source = %(source)s AND v.doc_id = %(doc_id)s AND v.version = %(version)s
  AND NOT EXISTS (SELECT 1 FROM inserted)
