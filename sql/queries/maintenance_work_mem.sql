-- The session's maintenance_work_mem as set, in whole MB, and where it comes from ('session' when
-- this session SET it; an HNSW build raises it for its graph and puts it back).
SELECT setting || coalesce(unit, ''), (pg_size_bytes(current_setting('maintenance_work_mem')) / 1048576)::integer, source
FROM pg_settings WHERE name = 'maintenance_work_mem'
