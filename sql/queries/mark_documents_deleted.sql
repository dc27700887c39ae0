UPDATE ragline.documents
SET status = 'deleted', deleted_at = now(), updated_at = now()
WHERE source = %(source)s AND doc_id = ANY(%(doc_ids)s) AND status = 'live'
