INSERT INTO ragline.change_approvals (source) VALUES (%(source)s)
ON CONFLICT (source) DO UPDATE SET approved_at = now()
