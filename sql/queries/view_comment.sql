-- The comment on a view of ragline's schema (NULL if the view or its comment does not exist):
-- migrate marks each view with the checksum of the file that made it.
SELECT obj_description(to_regclass(%(name)s), 'pg_class')
