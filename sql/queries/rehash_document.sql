-- The same content under the current hash formula: the stored hash is rewritten, no new version.
UPDATE ragline.documents
SET content_hash = %(content_hash)s
WHERE source = %(source)s AND doc_id = %(doc_id)s
