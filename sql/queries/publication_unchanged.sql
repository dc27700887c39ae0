-- True when the source's live documents, versions and chunker are exactly its published generation.
WITH live AS (
    SELECT doc_id, version AS doc_version, %(chunker)s::text AS chunker
    FROM ragline.documents WHERE source = %(source)s AND status = 'live'
), published AS (
    SELECT doc_id, doc_version, chunker FROM ragline.published_documents WHERE source = %(source)s
)
SELECT NOT EXISTS (SELECT * FROM live EXCEPT SELECT * FROM published)
   AND NOT EXISTS (SELECT * FROM published EXCEPT SELECT * FROM live)
