-- What search serves now, as one value (every source's published generation and the serving model):
-- the stamp of an answer and of its cache entry.
SELECT state FROM ragline.served_data
