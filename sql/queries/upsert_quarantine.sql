INSERT INTO ragline.quarantine (source, path, reason, detail, size_bytes)
VALUES (%(source)s, %(path)s, %(reason)s, %(detail)s, %(size_bytes)s)
ON CONFLICT (source, path) DO UPDATE
SET reason = EXCLUDED.reason,
    detail = EXCLUDED.detail,
    size_bytes = EXCLUDED.size_bytes,
    last_seen_at = now()
