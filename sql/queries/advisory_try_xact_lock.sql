SELECT pg_try_advisory_xact_lock(%(namespace)s::int4, hashtext(%(name)s))
