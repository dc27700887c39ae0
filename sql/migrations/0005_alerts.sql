-- Alerts to on-call (ragline.monitoring.alerts): one row per problem, open or last resolved, so
-- that a repeat is deduplicated, a reminder goes out at most every alerts.reminder_hours and a
-- recovery sends one resolve message. The message owed to destinations is kept here too: a send
-- that failed is retried on the next tick, never lost.
CREATE TABLE ragline.alerts (
    key          text        PRIMARY KEY,  -- the problem: run:<job>:<partition>, check:<asset>.<check>:<partition>
    state        text        NOT NULL CHECK (state IN ('open', 'resolved')),
    severity     text        NOT NULL CHECK (severity IN ('error', 'warn')),
    title        text        NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    link         text,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    occurrences  integer     NOT NULL DEFAULT 1,  -- distinct occurrences: failed runs, check evaluations
    last_occurrence text,                  -- the latest one's id (a run id, a check execution id)
    last_sent    timestamptz,              -- the last alert or reminder delivered everywhere
    resolved_at  timestamptz,
    owed         text        CHECK (owed IN ('alert', 'reminder', 'resolve')),
    owed_to      text[]      NOT NULL DEFAULT '{}',  -- destinations that have not received it yet
    last_error   text                      -- the last failed send (names the host, never a secret)
);
CREATE INDEX alerts_owed ON ragline.alerts (first_seen) WHERE owed IS NOT NULL;
CREATE INDEX alerts_open ON ragline.alerts (last_sent) WHERE state = 'open';
