-- The same answer to the same question is queued once: a second selection inserts nothing.
INSERT INTO ragline.annotation_items
    (partition, eval_set, variant, question_id, question_hash, answer_hash, reasons, question, answer,
     context, reference, judge, similarity)
VALUES
    (%(partition)s, %(eval_set)s, %(variant)s, %(question_id)s, %(question_hash)s, %(answer_hash)s,
     %(reasons)s, %(question)s, %(answer)s, %(context)s, %(reference)s, %(judge)s, %(similarity)s)
ON CONFLICT (eval_set, variant, question_id, question_hash, answer_hash) DO NOTHING
RETURNING item_id
