INSERT INTO ragline.eval_questions
    (eval_set, question_id, question, relevant, answer, kind, synthetic, metadata)
VALUES
    (%(eval_set)s, %(question_id)s, %(question)s, %(relevant)s, %(answer)s, %(kind)s, %(synthetic)s, %(metadata)s)
