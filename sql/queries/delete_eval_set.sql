DELETE FROM ragline.eval_questions WHERE eval_set = %(eval_set)s
