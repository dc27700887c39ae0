-- A model's serving HNSW indexes and whether each is valid (a failed CONCURRENTLY build is not).
SELECT c.relname, i.indisvalid
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'ragline' AND c.relname LIKE %(prefix)s
