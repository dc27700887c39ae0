INSERT INTO ragline.drift_metrics
    (partition, scope, subject, p_value, mmd2, effect, n_baseline, n_current, significant, alarm, reason)
VALUES
    (%(partition)s, %(scope)s, %(subject)s, %(p_value)s, %(mmd2)s, %(effect)s, %(n_baseline)s,
     %(n_current)s, %(significant)s, %(alarm)s, %(reason)s)
