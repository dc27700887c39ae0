-- BM25 extensions this server offers, and whether each is installed in this database.
SELECT a.name, a.default_version, e.extversion
FROM pg_available_extensions a
LEFT JOIN pg_extension e ON e.extname = a.name
WHERE a.name = ANY(%(names)s::text[])
ORDER BY a.name
