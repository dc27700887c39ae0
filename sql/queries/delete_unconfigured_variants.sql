-- Chunks and lexical texts of variants that are no longer configured.
WITH chunks AS (
    DELETE FROM ragline.variant_chunks WHERE NOT (variant = ANY(%(variants)s)) RETURNING 1
), texts AS (
    DELETE FROM ragline.indexed_texts
    WHERE chunk_set <> 'default' AND NOT (chunk_set = ANY(%(variants)s)) RETURNING 1
)
SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM texts)
