SELECT model_id FROM ragline.generations WHERE source = %(source)s AND generation = %(generation)s
