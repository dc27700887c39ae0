"""The database: embedded or external Postgres, the pool, migrations and named queries."""
