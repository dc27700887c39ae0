-- Each chunk set's BM25 totals: texts and the sum of their lengths (the sum of the set's delta rows).
CREATE OR REPLACE VIEW ragline.lexical_stats AS
SELECT chunk_set, sum(texts)::bigint AS texts, sum(total_length)::bigint AS total_length
FROM ragline.lexical_stat_deltas
GROUP BY chunk_set;
