COPY ragline.variant_chunks (variant, chunk_id, source, doc_id, doc_version, chunk_index, text,
                             text_hash, token_count, start_char, end_char, metadata, chunker) FROM STDIN
