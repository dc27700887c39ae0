SELECT key, state, severity, title, detail, link, first_seen, last_seen, occurrences, last_occurrence, last_sent,
       resolved_at, owed, owed_to, last_error
FROM ragline.alerts
WHERE state = 'open' AND key LIKE %(prefix)s || '%%'
ORDER BY first_seen
