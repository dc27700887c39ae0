-- The k nearest served texts of a query vector ({model} and {dim} are literals: the partial index
-- matches only a query that repeats its predicate and expression).
SELECT text_hash FROM ragline.serving_vectors WHERE model_id = {model}
ORDER BY embedding::vector({dim}) <=> %(q)s::vector({dim}) LIMIT {k}
