-- Model calls in [since, until) grouped by one dimension (asset, model, caller or day): calls, failed
-- calls, tokens, cost of the priced calls and the models without a price. The group's label is built
-- here so that each grouping is one CASE, not a statement per dimension.
WITH labelled AS (
    SELECT
        CASE %(by)s
            WHEN 'asset' THEN coalesce(asset_key, '(' || caller_kind || ')')
            WHEN 'model' THEN kind || ':' || model
            WHEN 'caller' THEN caller_kind || coalesce(':' || asset_key, '')
                || coalesce(' ' || partition_key, '') || coalesce(':key ' || api_key_id::text, '')
            WHEN 'day' THEN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
        END AS label,
        c.*
    FROM ragline.llm_calls c
    WHERE at >= %(since)s AND at < %(until)s
)
SELECT
    label,
    count(*) AS calls,
    count(*) FILTER (WHERE NOT ok) AS failed,
    coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(completion_tokens), 0) AS completion_tokens,
    coalesce(sum(cost_usd), 0)::double precision AS cost_usd,
    coalesce(array_agg(DISTINCT model) FILTER (WHERE NOT price_known), '{}') AS unpriced_models
FROM labelled
GROUP BY label
ORDER BY 6 DESC, sum(prompt_tokens + completion_tokens) DESC, label
