UPDATE ragline.annotation_items SET status = 'labelled' WHERE item_id = %(item_id)s AND status = 'open'
