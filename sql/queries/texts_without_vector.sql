-- Of the given text hashes, those with no vector of this model in the ledger.
SELECT h
FROM unnest(%(hashes)s::text[]) AS h
WHERE NOT EXISTS (
    SELECT 1 FROM ragline.embeddings e WHERE e.text_hash = h AND e.model_id = %(model_id)s)
