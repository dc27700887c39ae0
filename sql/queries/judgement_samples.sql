-- The cached samples of one judgement (judge model, prompt version and hash, inputs), below k.
SELECT sample, score, reason, details
FROM ragline.judgements
WHERE judge_model = %(judge_model)s
  AND prompt = %(prompt)s
  AND prompt_sha256 = %(prompt_sha256)s
  AND inputs_hash = %(inputs_hash)s
  AND sample < %(samples)s
ORDER BY sample
