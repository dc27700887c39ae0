-- How many items an annotator has yet to label.
SELECT count(*) FROM ragline.annotation_items i
WHERE i.status <> 'promoted'
  AND NOT EXISTS (
      SELECT 1 FROM ragline.human_labels l WHERE l.item_id = i.item_id AND l.annotator = %(annotator)s
  )
