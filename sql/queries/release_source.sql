UPDATE ragline.published_generations SET held_since = NULL
WHERE source = %(source)s AND held_since IS NOT NULL
