INSERT INTO ragline.api_requests
    (key_id, method, route, status, latency_ms, models, prompt_tokens, completion_tokens, cost, cached, error)
VALUES
    (%(key_id)s, %(method)s, %(route)s, %(status)s, %(latency_ms)s, %(models)s, %(prompt_tokens)s,
     %(completion_tokens)s, %(cost)s, %(cached)s, %(error)s)
