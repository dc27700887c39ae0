-- A variant chunk set's lexical texts follow its chunks: new texts in, texts no chunk has out.
WITH texts AS (
    SELECT DISTINCT ON (c.text_hash) c.text_hash, c.text
    FROM ragline.corpus_chunks c WHERE c.chunk_set = %(chunk_set)s
), added AS (
    INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
    SELECT %(chunk_set)s, text_hash, text FROM texts
    ON CONFLICT (chunk_set, text_hash) DO NOTHING
    RETURNING text_hash
), removed AS (
    DELETE FROM ragline.indexed_texts i
    WHERE i.chunk_set = %(chunk_set)s AND NOT EXISTS (SELECT 1 FROM texts t WHERE t.text_hash = i.text_hash)
    RETURNING text_hash
)
SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM removed)
