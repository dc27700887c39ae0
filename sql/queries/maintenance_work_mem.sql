-- The session's maintenance_work_mem as set, and in whole MB (an HNSW build raises it for its graph).
SELECT current_setting('maintenance_work_mem'), (pg_size_bytes(current_setting('maintenance_work_mem')) / 1048576)::integer
