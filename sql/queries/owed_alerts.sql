-- What is owed to destinations, oldest problem first (read, then sent outside any transaction).
SELECT key, state, severity, title, detail, link, first_seen, last_seen, occurrences, last_occurrence, last_sent,
       resolved_at, owed, owed_to, last_error
FROM ragline.alerts
WHERE owed IS NOT NULL
ORDER BY first_seen
