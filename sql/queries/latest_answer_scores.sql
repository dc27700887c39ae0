-- The latest partition's answer scores per eval set, variant and metric, with the previous
-- partition's mean and the regression gate's paired interval against its baseline partition.
WITH latest AS (SELECT max(partition) AS day FROM ragline.answer_scores)
SELECT s.partition, s.eval_set, s.variant, s.metric, s.kind, s.questions, s.measured, s.unmeasured,
       s.mean, s.low, s.high, s.gate_passed, s.config -> 'samples' AS samples, p.partition AS previous, p.mean AS previous_mean,
       g.baseline AS gate_baseline, g.questions AS gate_questions, g.diff AS gate_diff,
       g.low AS gate_low, g.high AS gate_high, g.verdict AS gate_verdict, g.details AS gate_details
FROM ragline.answer_scores s
JOIN latest ON s.partition = latest.day
LEFT JOIN LATERAL (
    SELECT partition, mean FROM ragline.answer_scores x
    WHERE x.eval_set = s.eval_set AND x.variant = s.variant AND x.metric = s.metric
      AND x.partition < s.partition
    ORDER BY x.partition DESC LIMIT 1
) p ON true
LEFT JOIN ragline.answer_comparisons g
  ON g.partition = s.partition AND g.eval_set = s.eval_set AND g.candidate = s.variant
 AND g.metric = s.metric AND g.kind = 'gate'
ORDER BY s.eval_set, s.variant, s.kind, s.metric
