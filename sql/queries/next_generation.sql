-- The next generation number of a source (numbers are never reused, even after a rollback).
SELECT coalesce(max(generation), 0) + 1 FROM ragline.generations WHERE source = %(source)s
