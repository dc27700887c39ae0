SELECT count(*) FROM ragline.annotation_items WHERE partition = %(partition)s
