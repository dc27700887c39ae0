-- The texts of a generation enter the served lexical set and, with the given models' vectors from
-- the ledger, the served vectors. Texts already served by another source are left as they are.
WITH texts AS (
    SELECT DISTINCT ON (c.text_hash) c.text_hash, c.text
    FROM ragline.generation_documents g
    JOIN ragline.chunks c
      ON c.source = g.source AND c.doc_id = g.doc_id AND c.doc_version = g.doc_version
     AND c.chunker = g.chunker
    WHERE g.source = %(source)s AND g.generation = %(generation)s
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
