SELECT count(*) FROM ragline.documents WHERE source = %(source)s AND status = 'live'
