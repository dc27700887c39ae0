INSERT INTO ragline.variant_comparisons
    (partition, eval_set, control, variant, questions, ndcg_control, ndcg_variant, diff, low, high, verdict)
VALUES
    (%(partition)s, %(eval_set)s, %(control)s, %(variant)s, %(questions)s, %(ndcg_control)s,
     %(ndcg_variant)s, %(diff)s, %(low)s, %(high)s, %(verdict)s)
ON CONFLICT (partition, eval_set, variant) DO UPDATE SET
    control = EXCLUDED.control, questions = EXCLUDED.questions, ndcg_control = EXCLUDED.ndcg_control,
    ndcg_variant = EXCLUDED.ndcg_variant, diff = EXCLUDED.diff, low = EXCLUDED.low,
    high = EXCLUDED.high, verdict = EXCLUDED.verdict, computed_at = now()
