-- After a source stops serving a generation: its texts that no published generation serves any more
-- leave the served lexical set and the served vectors. EXCEPT, not NOT EXISTS: a set operation
-- reads the served chunks once whatever the planner's statistics say (right after a build they
-- may have none, and an anti join that re-read the view per text took minutes).
WITH gone AS (
    SELECT text_hash FROM ragline.generation_texts WHERE source = %(source)s AND generation = %(generation)s
    EXCEPT
    SELECT text_hash FROM ragline.corpus_chunks WHERE chunk_set = 'default'
), lexical AS (
    DELETE FROM ragline.indexed_texts i USING gone g
    WHERE i.chunk_set = 'default' AND i.text_hash = g.text_hash
    RETURNING i.text_hash
), dense AS (
    DELETE FROM ragline.serving_vectors v USING gone g WHERE v.text_hash = g.text_hash
    RETURNING v.text_hash
)
SELECT (SELECT count(*) FROM lexical), (SELECT count(*) FROM dense)
