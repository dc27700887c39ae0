-- The text hashes whose embedding claim (per model and text) this session takes now, held across
-- transactions until release_text_claims: the pipelined embedder claims a batch before the model
-- runs it and releases it once its vectors are committed. A claim another run holds is skipped.
SELECT h
FROM unnest(%(hashes)s::text[]) AS h
WHERE pg_try_advisory_lock(%(namespace)s::int4, hashtext(%(model_id)s || ' ' || h))
