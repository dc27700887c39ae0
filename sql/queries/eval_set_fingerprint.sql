SELECT metadata->>'fingerprint' FROM ragline.eval_questions WHERE eval_set = %(eval_set)s LIMIT 1
