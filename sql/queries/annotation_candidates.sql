-- Every answer of a partition with its metrics, and whether the same answer is queued already.
SELECT r.eval_set, r.variant, r.question_id, r.question_hash, r.question, r.answer, r.context,
       r.reference, encode(sha256(convert_to(r.answer, 'UTF8')), 'hex') AS answer_hash,
       coalesce(
           jsonb_object_agg(
               m.metric,
               jsonb_build_object('kind', m.kind, 'mean', m.mean, 'low', m.low, 'high', m.high,
                                  'unmeasured', m.unmeasured)
           ) FILTER (WHERE m.metric IS NOT NULL),
           '{}'
       ) AS metrics,
       EXISTS (
           SELECT 1 FROM ragline.annotation_items i
           WHERE i.eval_set = r.eval_set AND i.variant = r.variant AND i.question_id = r.question_id
             AND i.question_hash = r.question_hash
             AND i.answer_hash = encode(sha256(convert_to(r.answer, 'UTF8')), 'hex')
       ) AS queued
FROM ragline.answer_results r
LEFT JOIN ragline.answer_metric_results m USING (partition, eval_set, variant, question_id)
WHERE r.partition = %(partition)s
GROUP BY r.partition, r.eval_set, r.variant, r.question_id
ORDER BY r.eval_set, r.variant, r.question_id
