-- A source's publication pointer with the served generation's figures.
SELECT p.source, p.generation, p.previous, p.published_at, p.held_since, g.documents, g.chunks, g.model_id
FROM ragline.published_generations p
JOIN ragline.generations g ON g.source = p.source AND g.generation = p.generation
WHERE p.source = %(source)s
