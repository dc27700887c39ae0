INSERT INTO ragline.source_chunkers (source, chunker) VALUES (%(source)s, %(chunker)s)
ON CONFLICT (source) DO UPDATE SET chunker = EXCLUDED.chunker, updated_at = now()
