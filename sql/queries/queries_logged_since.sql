-- Queries asked through ragline's retrieval since a time (those logged in ragline.query_log).
SELECT count(*) FROM ragline.query_log WHERE asked_at >= %(since)s
