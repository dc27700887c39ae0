-- What is owed to destinations, oldest problem first; a row being sent by another tick is skipped.
SELECT key, state, severity, title, detail, link, first_seen, last_seen, occurrences, last_occurrence, last_sent,
       resolved_at, owed, owed_to, last_error
FROM ragline.alerts
WHERE owed IS NOT NULL
ORDER BY first_seen
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
