SELECT pg_advisory_lock(%(namespace)s::int4, hashtext(%(name)s))
