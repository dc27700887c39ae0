SELECT item_id FROM ragline.annotation_items
WHERE eval_set = %(eval_set)s AND variant = %(variant)s AND question_id = %(question_id)s
  AND question_hash = %(question_hash)s AND answer_hash = %(answer_hash)s
