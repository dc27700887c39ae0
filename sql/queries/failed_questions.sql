-- Questions of one run that retrieved nothing relevant in the top k, with what came back.
SELECT r.question_id, q.question, q.relevant, r.retrieved
FROM ragline.retrieval_results r
JOIN ragline.eval_questions q ON q.eval_set = r.eval_set AND q.question_id = r.question_id
WHERE r.partition = %(partition)s AND r.variant = %(variant)s AND r.eval_set = %(eval_set)s
  AND r.hit = 0
ORDER BY r.question_id
LIMIT %(limit)s
