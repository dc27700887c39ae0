-- Exact BM25 scores of the given texts: their postings of the query's terms, read through the
-- (set, term, text) key, weighed and summed as bm25_exhaustive.sql does.
SELECT x.text_id, x.text_hash, s.score
FROM (
    SELECT p.text_id,
           sum(ragline.bm25_weight(%(n)s::float8, t.df, p.tf, p.doc_length, %(k1)s::float8, %(b)s::float8,
                                   %(avgdl)s::float8) ORDER BY p.term_id) AS score
    FROM unnest(%(term_ids)s::integer[], %(dfs)s::float8[]) AS t (term_id, df)
    JOIN ragline.lexical_postings p
      ON p.chunk_set = %(chunk_set)s AND p.term_id = t.term_id AND p.text_id = ANY(%(text_ids)s::integer[])
    GROUP BY p.text_id
) s
JOIN ragline.lexical_texts x ON x.text_id = s.text_id
