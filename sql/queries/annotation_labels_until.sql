-- Every label given before a time, with the judge's scores of its item at selection.
SELECT l.item_id, l.annotator, l.faithful, l.relevant, l.correct, i.judge
FROM ragline.human_labels l
JOIN ragline.annotation_items i USING (item_id)
WHERE l.updated_at < %(until)s
ORDER BY l.item_id, l.annotator
