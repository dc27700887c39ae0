-- Every posting of a chunk set as binary COPY rows of three int4 (term_id, text_id, tf), for the
-- in-memory BM25 index to parse with numpy (26 bytes a row, in no particular order).
COPY (
    SELECT term_id, text_id, tf FROM ragline.lexical_postings WHERE chunk_set = %(chunk_set)s
) TO STDOUT (FORMAT BINARY)
