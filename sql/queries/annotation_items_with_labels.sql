-- Items with their labels, for promotion and for export (Label Studio). NULL item_ids: every item.
SELECT i.item_id, i.partition, i.eval_set, i.variant, i.question_id, i.question_hash, i.answer_hash,
       i.reasons, i.question, i.answer, i.context, i.reference, i.judge, i.similarity, i.status,
       coalesce(
           jsonb_agg(
               jsonb_build_object('annotator', l.annotator, 'faithful', l.faithful,
                                  'relevant', l.relevant, 'correct', l.correct, 'note', l.note,
                                  'source', l.source, 'created_at', l.created_at)
               ORDER BY l.annotator
           ) FILTER (WHERE l.label_id IS NOT NULL),
           '[]'
       ) AS labels
FROM ragline.annotation_items i
LEFT JOIN ragline.human_labels l USING (item_id)
WHERE %(item_ids)s::bigint[] IS NULL OR i.item_id = ANY(%(item_ids)s::bigint[])
GROUP BY i.item_id
ORDER BY i.item_id
