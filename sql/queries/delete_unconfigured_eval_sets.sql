-- Stored questions of eval sets no longer configured (their scores stay for history).
DELETE FROM ragline.eval_questions WHERE NOT (eval_set = ANY(%(names)s))
