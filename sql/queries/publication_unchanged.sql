-- True when the source's live documents, versions and chunker are exactly its published generation.
SELECT NOT EXISTS (
    (SELECT doc_id, version, %(chunker)s::text FROM ragline.documents
     WHERE source = %(source)s AND status = 'live')
    EXCEPT
    (SELECT g.doc_id, g.doc_version, g.chunker
     FROM ragline.published_generations p
     JOIN ragline.generation_documents g ON g.source = p.source AND g.generation = p.generation
     WHERE p.source = %(source)s)
) AND NOT EXISTS (
    (SELECT g.doc_id, g.doc_version, g.chunker
     FROM ragline.published_generations p
     JOIN ragline.generation_documents g ON g.source = p.source AND g.generation = p.generation
     WHERE p.source = %(source)s)
    EXCEPT
    (SELECT doc_id, version, %(chunker)s::text FROM ragline.documents
     WHERE source = %(source)s AND status = 'live')
)
