-- What is owed to destinations, oldest problem first, those whose last send failed last (read, then
-- sent outside any transaction).
SELECT key, state, severity, title, detail, link, first_seen, last_seen, occurrences, last_occurrence, last_sent,
       resolved_at, owed, owed_to, last_error
FROM ragline.alerts
WHERE owed IS NOT NULL
ORDER BY last_error IS NOT NULL, first_seen
