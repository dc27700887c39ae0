DELETE FROM ragline.change_approvals WHERE source = %(source)s
