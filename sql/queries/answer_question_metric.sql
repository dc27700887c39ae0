-- One metric's per-question mean (NULL: unmeasured) and samples of an answer variant on an eval set, with the
-- question hash that pairs only identical questions.
SELECT r.question_id, r.question_hash, m.mean, m.samples
FROM ragline.answer_results r
JOIN ragline.answer_metric_results m USING (partition, eval_set, variant, question_id)
WHERE r.partition = %(partition)s AND r.eval_set = %(eval_set)s AND r.variant = %(variant)s
  AND m.metric = %(metric)s
