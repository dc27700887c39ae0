-- Garbage collection: what no retained generation (served or kept for rollback) and no pending work
-- (a live document's current version) references. Returns rows and bytes freed per kind.
WITH retained AS (
    SELECT p.source, unnest(array_remove(ARRAY[p.generation, p.previous], NULL)) AS generation
    FROM ragline.published_generations p
), old_generations AS (
    DELETE FROM ragline.generations g
    WHERE NOT EXISTS (SELECT 1 FROM retained r WHERE r.source = g.source AND r.generation = g.generation)
    RETURNING g.source, g.generation, pg_column_size(g.*) AS bytes
), kept AS (
    SELECT g.source, g.doc_id, g.doc_version, g.chunker
    FROM ragline.generation_documents g
    JOIN retained r ON r.source = g.source AND r.generation = g.generation
), chunks AS (
    DELETE FROM ragline.chunks c
    WHERE NOT EXISTS (
              SELECT 1 FROM kept k
              WHERE k.source = c.source AND k.doc_id = c.doc_id AND k.doc_version = c.doc_version
                AND k.chunker = c.chunker)
      AND NOT EXISTS (
              SELECT 1 FROM ragline.documents d
              WHERE d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version
                AND d.status = 'live')
    RETURNING c.text_hash, pg_column_size(c.*) AS bytes
), variant_chunks AS (
    DELETE FROM ragline.variant_chunks c
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.published_documents g
        WHERE g.source = c.source AND g.doc_id = c.doc_id AND g.doc_version = c.doc_version)
    RETURNING c.text_hash, pg_column_size(c.*) AS bytes
)
SELECT 'generations', count(*), coalesce(sum(bytes), 0) FROM old_generations
UNION ALL SELECT 'chunks', count(*), coalesce(sum(bytes), 0) FROM chunks
UNION ALL SELECT 'variant_chunks', count(*), coalesce(sum(bytes), 0) FROM variant_chunks
