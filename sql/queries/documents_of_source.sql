SELECT doc_id, version, content_hash, status, path
FROM ragline.documents
WHERE source = %(source)s
