INSERT INTO ragline.answer_scores
    (partition, eval_set, variant, metric, kind, questions, measured, unmeasured, mean, low, high, config,
     gate_passed)
VALUES
    (%(partition)s, %(eval_set)s, %(variant)s, %(metric)s, %(kind)s, %(questions)s, %(measured)s,
     %(unmeasured)s, %(mean)s, %(low)s, %(high)s, %(config)s, %(gate_passed)s)
