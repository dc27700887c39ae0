SELECT d.doc_id, length(btrim(v.text)) AS char_count
FROM ragline.documents d
JOIN ragline.document_versions v
  ON v.source = d.source AND v.doc_id = d.doc_id AND v.version = d.version
WHERE d.source = %(source)s AND d.status = 'live'
