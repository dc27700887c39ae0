UPDATE ragline.published_generations SET held_since = now() WHERE source = %(source)s
