-- After a source stops serving a generation: its texts that no published generation serves any more
-- leave the served lexical set and the served vectors.
WITH texts AS (
    SELECT DISTINCT text_hash
    FROM ragline.generation_texts
    WHERE source = %(source)s AND generation = %(generation)s
), gone AS (
    SELECT t.text_hash FROM texts t
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.corpus_chunks c WHERE c.chunk_set = 'default' AND c.text_hash = t.text_hash)
), lexical AS (
    DELETE FROM ragline.indexed_texts i USING gone g
    WHERE i.chunk_set = 'default' AND i.text_hash = g.text_hash
    RETURNING i.text_hash
), dense AS (
    DELETE FROM ragline.serving_vectors v USING gone g WHERE v.text_hash = g.text_hash
    RETURNING v.text_hash
)
SELECT (SELECT count(*) FROM lexical), (SELECT count(*) FROM dense)
