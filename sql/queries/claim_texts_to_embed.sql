-- The text hashes whose embedding claim (per model and text) this transaction takes now; a claim
-- another run's open transaction holds is skipped, not waited for. Held until the transaction ends.
SELECT h
FROM unnest(%(hashes)s::text[]) AS h
WHERE pg_try_advisory_xact_lock(%(namespace)s::int4, hashtext(%(model_id)s || ' ' || h))
