-- The HNSW scan settings of one dense search, for its transaction only: iterative scans keep
-- reading the index past ef_search (relaxed order: the search re-sorts its candidates), and
-- ef_search (text, as set_config takes it) is at least the rows asked for. One prepared statement
-- instead of two SET LOCALs.
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.ef_search', %(ef_search)s, true)
