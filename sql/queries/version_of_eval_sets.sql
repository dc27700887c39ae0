-- Data version of the eval sets: every question with its text and relevant ids.
SELECT md5(coalesce(string_agg(eval_set || ':' || question_id || ':' || md5(question) || ':' || relevant::text,
                               E'\n' ORDER BY eval_set, question_id), ''))
FROM ragline.eval_questions
