-- How a source's live documents differ from what it has published: published documents that are
-- no longer live (deleted), live at another version (replaced), and live ones not published (added).
WITH published AS (
    SELECT doc_id, doc_version FROM ragline.published_documents WHERE source = %(source)s
), live AS (
    SELECT doc_id, version FROM ragline.documents WHERE source = %(source)s AND status = 'live'
)
SELECT (SELECT count(*) FROM published) AS published,
       (SELECT count(*) FROM published p WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.doc_id = p.doc_id))
           AS deleted,
       (SELECT count(*) FROM published p JOIN live l USING (doc_id) WHERE l.version <> p.doc_version)
           AS replaced,
       (SELECT count(*) FROM live l WHERE NOT EXISTS (SELECT 1 FROM published p WHERE p.doc_id = l.doc_id))
           AS added
