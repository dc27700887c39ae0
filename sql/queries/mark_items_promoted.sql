UPDATE ragline.annotation_items SET status = 'promoted' WHERE item_id = ANY(%(item_ids)s)
