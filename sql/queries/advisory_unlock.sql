SELECT pg_advisory_unlock(%(namespace)s::int4, hashtext(%(name)s))
