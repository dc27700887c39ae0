INSERT INTO ragline.answer_results
    (partition, eval_set, variant, question_id, question_hash, question, reference, answer, abstained,
     answer_id, context_chunk_ids, context)
VALUES
    (%(partition)s, %(eval_set)s, %(variant)s, %(question_id)s, %(question_hash)s, %(question)s,
     %(reference)s, %(answer)s, %(abstained)s, %(answer_id)s, %(context_chunk_ids)s, %(context)s)
