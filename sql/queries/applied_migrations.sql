SELECT name, checksum FROM ragline.schema_migrations
