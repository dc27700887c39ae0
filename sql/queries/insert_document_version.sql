INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text, metadata, char_count)
VALUES (%(source)s, %(doc_id)s, %(version)s, %(content_hash)s, %(text)s, %(metadata)s, %(char_count)s)
ON CONFLICT (source, doc_id, version) DO NOTHING
