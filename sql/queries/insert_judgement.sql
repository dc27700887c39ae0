-- Cache one judge sample; a row already stored under the same key (a concurrent judgement of the same
-- inputs, asked with the same seed) stays as it is.
INSERT INTO ragline.judgements
    (judge_model, prompt, prompt_sha256, inputs_hash, sample, metric, score, reason, details)
VALUES (%(judge_model)s, %(prompt)s, %(prompt_sha256)s, %(inputs_hash)s, %(sample)s, %(metric)s,
        %(score)s, %(reason)s, %(details)s)
ON CONFLICT (judge_model, prompt, prompt_sha256, inputs_hash, sample) DO NOTHING
