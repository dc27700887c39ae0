-- Every searchable chunk: the sources' own chunks (chunk_set 'default') and evaluation variants'
-- chunks (chunk_set = variant name), of the documents each source has published (the generation
-- its pointer names), with the document's metadata. Nothing unpublished is searchable.
CREATE OR REPLACE VIEW ragline.corpus_chunks AS
SELECT 'default'::text AS chunk_set,
       c.chunk_id, c.source, c.doc_id, d.path, c.doc_version, c.chunk_index, c.text, c.text_hash,
       c.token_count, c.start_char, c.end_char, c.metadata, v.metadata AS doc_metadata
FROM ragline.chunks c
JOIN ragline.published_generations p ON p.source = c.source
JOIN ragline.generation_documents g
  ON g.source = c.source AND g.generation = p.generation AND g.doc_id = c.doc_id
 AND g.doc_version = c.doc_version AND g.chunker = c.chunker
JOIN ragline.documents d ON d.source = c.source AND d.doc_id = c.doc_id
JOIN ragline.document_versions v
  ON v.source = c.source AND v.doc_id = c.doc_id AND v.version = c.doc_version
UNION ALL
SELECT c.variant,
       c.chunk_id, c.source, c.doc_id, d.path, c.doc_version, c.chunk_index, c.text, c.text_hash,
       c.token_count, c.start_char, c.end_char, c.metadata, v.metadata
FROM ragline.variant_chunks c
JOIN ragline.published_generations p ON p.source = c.source
JOIN ragline.generation_documents g
  ON g.source = c.source AND g.generation = p.generation AND g.doc_id = c.doc_id
 AND g.doc_version = c.doc_version
JOIN ragline.documents d ON d.source = c.source AND d.doc_id = c.doc_id
JOIN ragline.document_versions v
  ON v.source = c.source AND v.doc_id = c.doc_id AND v.version = c.doc_version;
