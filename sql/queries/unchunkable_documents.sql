-- Documents the chunks stage quarantined because their text yields no chunk (keyed by doc_id).
SELECT path
FROM ragline.quarantine
WHERE source = %(source)s AND reason = 'no_chunks'
