-- The chunk texts of every generation (one row per chunk: a text repeated in a generation appears
-- once per chunk that has it).
CREATE OR REPLACE VIEW ragline.generation_texts AS
SELECT g.source, g.generation, c.text_hash, c.text
FROM ragline.generation_documents g
JOIN ragline.chunks c
  ON c.source = g.source AND c.doc_id = g.doc_id AND c.doc_version = g.doc_version AND c.chunker = g.chunker;
