-- Evaluation questions, a seeded sample: real queries for the recall check when few are logged.
SELECT question FROM ragline.eval_questions ORDER BY md5(eval_set || ':' || question_id) LIMIT %(limit)s
