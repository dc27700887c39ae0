SELECT status, count(*) FROM ragline.annotation_items GROUP BY status
