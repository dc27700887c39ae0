-- A file that loads again (or is gone) leaves quarantine.
DELETE FROM ragline.quarantine
WHERE source = %(source)s AND NOT (path = ANY(%(paths)s))
