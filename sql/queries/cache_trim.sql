-- Keep the answer cache to max_entries rows: the least recently used (stored or hit) go first.
DELETE FROM ragline.answer_cache
WHERE id IN (
    SELECT id FROM ragline.answer_cache
    ORDER BY coalesce(last_hit_at, created_at) DESC, id DESC
    OFFSET %(max_entries)s
)
