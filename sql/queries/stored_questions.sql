SELECT question_id, question, relevant, answer, kind, synthetic, metadata
FROM ragline.eval_questions WHERE eval_set = %(eval_set)s ORDER BY question_id
