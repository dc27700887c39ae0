-- The texts of a generation enter the served lexical set and, with the given models' vectors from
-- the ledger, the served vectors. Texts already served by another source are left as they are.
WITH texts AS (
    SELECT DISTINCT ON (text_hash) text_hash, text
    FROM ragline.generation_texts
    WHERE source = %(source)s AND generation = %(generation)s
), lexical AS (
    INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
    SELECT 'default', text_hash, text FROM texts
    ON CONFLICT (chunk_set, text_hash) DO NOTHING
    RETURNING text_hash
), dense AS (
    INSERT INTO ragline.serving_vectors (model_id, text_hash, embedding)
    SELECT e.model_id, e.text_hash, e.embedding
    FROM texts t JOIN ragline.embeddings e ON e.text_hash = t.text_hash AND e.model_id = ANY(%(models)s)
    ON CONFLICT (model_id, text_hash) DO NOTHING
    RETURNING text_hash
)
SELECT (SELECT count(*) FROM lexical), (SELECT count(*) FROM dense)
