SELECT to_regclass('ragline.schema_migrations')
