SELECT count(*) FROM ragline.current_chunks WHERE source = %(source)s
