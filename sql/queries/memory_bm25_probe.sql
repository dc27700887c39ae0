-- Before an in-memory BM25 search (ragline.retrieval.memory_bm25): the chunk set's lexical version,
-- its N and total length, and the query's term ids, in one round trip. Every statement that indexes
-- or unindexes a text of the set appends a lexical_stat_deltas row (migration 0004's triggers), and
-- each row carries its writer's transaction id, so the version changes with every change to the set
-- (and with compaction, which only costs a reload). The query's lexemes are found as in
-- bm25_top_texts.sql, so both paths score the same terms.
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s::text))
)
SELECT md5(coalesce(string_agg(d.xmin::text || ':' || d.texts || ':' || d.total_length, ','
                               ORDER BY d.xmin::text::bigint, d.texts, d.total_length), '')) AS version,
       coalesce(sum(d.texts), 0)::bigint AS texts,
       coalesce(sum(d.total_length), 0)::bigint AS total_length,
       ARRAY(
           SELECT l.term_id FROM terms
           JOIN ragline.lexical_lexemes l ON l.chunk_set = %(chunk_set)s AND l.lexeme = terms.lexeme
           ORDER BY l.term_id
       ) AS term_ids
FROM ragline.lexical_stat_deltas d
WHERE d.chunk_set = %(chunk_set)s
