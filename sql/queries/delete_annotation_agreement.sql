DELETE FROM ragline.annotation_agreement WHERE partition = %(partition)s
