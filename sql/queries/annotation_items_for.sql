-- Items an annotator has yet to label (promoted ones are done), oldest first.
SELECT i.item_id, i.partition, i.eval_set, i.variant, i.question_id, i.reasons, i.question, i.answer,
       i.context, i.reference, i.status
FROM ragline.annotation_items i
WHERE i.status <> 'promoted'
  AND NOT EXISTS (
      SELECT 1 FROM ragline.human_labels l WHERE l.item_id = i.item_id AND l.annotator = %(annotator)s
  )
ORDER BY i.item_id
LIMIT %(limit)s
