-- After gc_collect: document versions and ledger vectors that nothing references any more, and
-- served vectors of texts that are not served (none, unless something went wrong).
WITH versions AS (
    DELETE FROM ragline.document_versions v
    WHERE NOT EXISTS (
              SELECT 1 FROM ragline.documents d
              WHERE d.source = v.source AND d.doc_id = v.doc_id AND d.version = v.version)
      AND NOT EXISTS (
              SELECT 1 FROM ragline.generation_documents g
              WHERE g.source = v.source AND g.doc_id = v.doc_id AND g.doc_version = v.version)
      AND NOT EXISTS (
              SELECT 1 FROM ragline.chunks c
              WHERE c.source = v.source AND c.doc_id = v.doc_id AND c.doc_version = v.version)
      AND NOT EXISTS (
              SELECT 1 FROM ragline.variant_chunks c
              WHERE c.source = v.source AND c.doc_id = v.doc_id AND c.doc_version = v.version)
    RETURNING pg_column_size(v.*) AS bytes
), vectors AS (
    DELETE FROM ragline.embeddings e
    WHERE NOT EXISTS (SELECT 1 FROM ragline.chunks c WHERE c.text_hash = e.text_hash)
      AND NOT EXISTS (SELECT 1 FROM ragline.variant_chunks c WHERE c.text_hash = e.text_hash)
    RETURNING pg_column_size(e.*) AS bytes
), variant_texts AS (
    DELETE FROM ragline.indexed_texts t
    WHERE t.chunk_set <> 'default'
      AND NOT EXISTS (
          SELECT 1 FROM ragline.variant_chunks c WHERE c.variant = t.chunk_set AND c.text_hash = t.text_hash)
    RETURNING pg_column_size(t.*) AS bytes
), served AS (
    DELETE FROM ragline.serving_vectors s
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.indexed_texts t WHERE t.chunk_set = 'default' AND t.text_hash = s.text_hash)
    RETURNING pg_column_size(s.*) AS bytes
)
SELECT 'document_versions', count(*), coalesce(sum(bytes), 0) FROM versions
UNION ALL SELECT 'embeddings', count(*), coalesce(sum(bytes), 0) FROM vectors
UNION ALL SELECT 'variant_bm25_texts', count(*), coalesce(sum(bytes), 0) FROM variant_texts
UNION ALL SELECT 'serving_vectors', count(*), coalesce(sum(bytes), 0) FROM served
