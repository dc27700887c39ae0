-- Data version of a source's raw_documents: its live documents and the version each is at.
SELECT md5(coalesce(string_agg(doc_id || ':' || version || ':' || content_hash, E'\n' ORDER BY doc_id), ''))
FROM ragline.documents
WHERE source = %(source)s AND status = 'live'
