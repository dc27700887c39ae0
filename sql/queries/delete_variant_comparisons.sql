DELETE FROM ragline.variant_comparisons WHERE partition = %(partition)s
