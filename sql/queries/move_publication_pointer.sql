-- Serve another generation of a source; the one served until now becomes the previous one.
INSERT INTO ragline.published_generations AS p (source, generation, previous, published_at, held_since)
VALUES (%(source)s, %(generation)s, NULL, now(), NULL)
ON CONFLICT (source) DO UPDATE
SET previous = p.generation,
    generation = EXCLUDED.generation,
    published_at = now(),
    held_since = NULL
