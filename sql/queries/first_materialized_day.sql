-- The first day this project stored anything: its first document version (else its first migration).
SELECT coalesce(
    (SELECT min(created_at) FROM ragline.document_versions),
    (SELECT min(applied_at) FROM ragline.schema_migrations)
)::date
