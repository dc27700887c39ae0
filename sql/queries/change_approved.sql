SELECT EXISTS (SELECT 1 FROM ragline.change_approvals WHERE source = %(source)s)
