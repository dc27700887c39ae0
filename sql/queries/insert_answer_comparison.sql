INSERT INTO ragline.answer_comparisons
    (partition, eval_set, baseline, candidate, metric, kind, questions, mean_baseline, mean_candidate,
     diff, low, high, verdict, details)
VALUES
    (%(partition)s, %(eval_set)s, %(baseline)s, %(candidate)s, %(metric)s, %(kind)s, %(questions)s,
     %(mean_baseline)s, %(mean_candidate)s, %(diff)s, %(low)s, %(high)s, %(verdict)s, %(details)s)
