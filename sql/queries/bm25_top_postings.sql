-- The next postings of each term in impact order: `take` of them after the first `skip`.
SELECT t.term_id, p.text_id, p.tf, p.doc_length, p.impact
FROM unnest(%(term_ids)s::integer[], %(skips)s::integer[], %(takes)s::integer[]) AS t (term_id, skip, take)
CROSS JOIN LATERAL (
    SELECT p.text_id, p.tf, p.doc_length, p.impact
    FROM ragline.lexical_postings p
    WHERE p.chunk_set = %(chunk_set)s AND p.term_id = t.term_id
    ORDER BY p.impact DESC, p.text_id
    OFFSET t.skip LIMIT t.take
) p
