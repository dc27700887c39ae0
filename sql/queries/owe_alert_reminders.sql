-- Open problems whose last alert or reminder is older than the reminder interval owe a reminder.
UPDATE ragline.alerts
SET owed = 'reminder', owed_to = %(destinations)s
WHERE state = 'open'
  AND owed IS NULL
  AND last_sent <= %(now)s - make_interval(secs => %(reminder_seconds)s)
