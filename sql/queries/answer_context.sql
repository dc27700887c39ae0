-- The passages an answer was given, in prompt order ([n] = number), with their documents and texts:
-- the context as the judge sees it. A chunk of a variant's own chunk set is found there too.
SELECT n.number::int AS number, n.chunk_id, c.source || ':' || c.doc_id AS document, c.text
FROM ragline.answers a
CROSS JOIN LATERAL unnest(a.context_chunk_ids) WITH ORDINALITY AS n (chunk_id, number)
JOIN LATERAL (
    SELECT source, doc_id, text FROM ragline.chunks WHERE chunk_id = n.chunk_id
    UNION ALL
    SELECT source, doc_id, text FROM ragline.variant_chunks WHERE chunk_id = n.chunk_id
    LIMIT 1
) c ON true
WHERE a.answer_id = %(answer_id)s
ORDER BY n.number
