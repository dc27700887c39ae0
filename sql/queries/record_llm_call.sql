-- One model call into the cost ledger (ragline.costs.PostgresSink).
INSERT INTO ragline.llm_calls (
    kind, model, endpoint, prompt_tokens, completion_tokens, texts, cached, ok, error, latency_ms,
    cost_usd, price_known, route, caller_kind, asset_key, partition_key, run_id, api_key_id
) VALUES (
    %(kind)s, %(model)s, %(endpoint)s, %(prompt_tokens)s, %(completion_tokens)s, %(texts)s, %(cached)s,
    %(ok)s, %(error)s, %(latency_ms)s, %(cost_usd)s, %(price_known)s, %(route)s, %(caller_kind)s,
    %(asset_key)s, %(partition_key)s, %(run_id)s, %(api_key_id)s
)
