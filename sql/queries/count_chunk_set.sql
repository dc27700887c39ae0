SELECT count(*) FROM ragline.corpus_chunks WHERE chunk_set = %(chunk_set)s
