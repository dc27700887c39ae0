-- For this session only (not a transaction: CREATE INDEX CONCURRENTLY runs outside one).
SELECT set_config('maintenance_work_mem', %(value)s, false)
