INSERT INTO ragline.alerts (key, state, severity, title, detail, link, first_seen, last_seen,
                            occurrences, last_occurrence, last_sent, resolved_at, owed, owed_to, last_error)
VALUES (%(key)s, %(state)s, %(severity)s, %(title)s, %(detail)s, %(link)s, %(first_seen)s,
        %(last_seen)s, %(occurrences)s, %(last_occurrence)s, %(last_sent)s, %(resolved_at)s, %(owed)s, %(owed_to)s,
        %(last_error)s)
ON CONFLICT (key) DO UPDATE
SET state = EXCLUDED.state,
    severity = EXCLUDED.severity,
    title = EXCLUDED.title,
    detail = EXCLUDED.detail,
    link = EXCLUDED.link,
    first_seen = EXCLUDED.first_seen,
    last_seen = EXCLUDED.last_seen,
    occurrences = EXCLUDED.occurrences,
    last_occurrence = EXCLUDED.last_occurrence,
    last_sent = EXCLUDED.last_sent,
    resolved_at = EXCLUDED.resolved_at,
    owed = EXCLUDED.owed,
    owed_to = EXCLUDED.owed_to,
    last_error = EXCLUDED.last_error
