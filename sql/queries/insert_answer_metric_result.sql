INSERT INTO ragline.answer_metric_results
    (partition, eval_set, variant, question_id, metric, kind, mean, low, high, spread, samples,
     unmeasured, reasons, details, cached)
VALUES
    (%(partition)s, %(eval_set)s, %(variant)s, %(question_id)s, %(metric)s, %(kind)s, %(mean)s, %(low)s,
     %(high)s, %(spread)s, %(samples)s, %(unmeasured)s, %(reasons)s, %(details)s, %(cached)s)
