-- The HNSW scan settings of one dense search, for its transaction only: iterative scans keep
-- reading the index past ef_search (relaxed order: the search re-sorts its candidates), and
-- ef_search (text, as set_config takes it) is at least the rows asked for. plan_cache_mode: an
-- unfiltered search runs its prepared statement's generic plan (the HNSW scan either way; with
-- custom plans Postgres planned the corpus_chunks view again on every query, ~10 ms at 100k chunks);
-- a filtered one keeps 'auto', whose custom plans see the filter values. One prepared statement
-- instead of three SET LOCALs.
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.ef_search', %(ef_search)s, true),
       set_config('plan_cache_mode', %(plan_cache_mode)s, true)
