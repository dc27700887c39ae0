-- The texts of a chunk set, for the in-memory BM25 index: id, length in lexemes and hash.
SELECT text_id, doc_length, text_hash
FROM ragline.lexical_texts
WHERE chunk_set = %(chunk_set)s
ORDER BY text_id
