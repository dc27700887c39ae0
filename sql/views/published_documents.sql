-- The document versions each source serves now: its published generation, document by document.
CREATE OR REPLACE VIEW ragline.published_documents AS
SELECT g.source, g.generation, g.doc_id, g.doc_version, g.chunker
FROM ragline.published_generations p
JOIN ragline.generation_documents g ON g.source = p.source AND g.generation = p.generation;
