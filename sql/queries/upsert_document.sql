INSERT INTO ragline.documents (source, doc_id, path, version, content_hash, status)
VALUES (%(source)s, %(doc_id)s, %(path)s, %(version)s, %(content_hash)s, 'live')
ON CONFLICT (source, doc_id) DO UPDATE
SET path = EXCLUDED.path,
    version = EXCLUDED.version,
    content_hash = EXCLUDED.content_hash,
    status = 'live',
    deleted_at = NULL,
    updated_at = now()
