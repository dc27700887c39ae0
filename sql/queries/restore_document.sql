UPDATE ragline.documents
SET status = 'live', deleted_at = NULL, updated_at = now()
WHERE source = %(source)s AND doc_id = %(doc_id)s
