INSERT INTO ragline.schema_migrations (name, checksum) VALUES (%(name)s, %(checksum)s)
