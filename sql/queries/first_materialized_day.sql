-- The first day this project stored anything: its first migration (the ledger is never collected),
-- or an older document version (a database restored from before the ledger). Not the first
-- document version alone: garbage collection deletes old versions, and the start would move.
-- The UTC day, as the daily partitions count days (not the server's own time zone).
SELECT (least(
    (SELECT min(applied_at) FROM ragline.schema_migrations),
    (SELECT min(created_at) FROM ragline.document_versions)
) AT TIME ZONE 'UTC')::date
