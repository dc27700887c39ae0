-- Releases the session-level claims taken by claim_texts_for_pipeline (one per hash).
SELECT count(*) FILTER (WHERE pg_advisory_unlock(%(namespace)s::int4, hashtext(%(model_id)s || ' ' || h)))
FROM unnest(%(hashes)s::text[]) AS h
