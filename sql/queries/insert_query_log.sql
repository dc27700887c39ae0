INSERT INTO ragline.query_log
    (query, strategy, variant, k, filters, results, latency_ms, caller, model_id, embedding)
VALUES
    (%(query)s, %(strategy)s, %(variant)s, %(k)s, %(filters)s, %(results)s, %(latency_ms)s,
     %(caller)s, %(model_id)s, %(embedding)s)
RETURNING query_id
