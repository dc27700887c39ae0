-- A new generation of a source: its live documents at their current versions, split by its chunker.
WITH generation AS (
    INSERT INTO ragline.generations (source, generation, model_id, documents, chunks)
    SELECT %(source)s, %(generation)s, %(model_id)s,
           (SELECT count(*) FROM ragline.documents WHERE source = %(source)s AND status = 'live'),
           (SELECT count(*) FROM ragline.chunks c
            JOIN ragline.documents d
              ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version
            WHERE d.source = %(source)s AND d.status = 'live' AND c.chunker = %(chunker)s)
    RETURNING source, generation
)
INSERT INTO ragline.generation_documents (source, generation, doc_id, doc_version, chunker)
SELECT g.source, g.generation, d.doc_id, d.version, %(chunker)s
FROM generation g
JOIN ragline.documents d ON d.source = g.source AND d.status = 'live'
