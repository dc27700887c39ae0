-- A key's spent tokens as a counter that the cost ledger keeps: the budget check reads one row instead
-- of summing the key's whole request history on every request, and it counts what the key's chat calls
-- really spent (a stream its client abandoned included), not only what the request log filled in.
ALTER TABLE ragline.api_keys ADD COLUMN tokens_used bigint NOT NULL DEFAULT 0;

UPDATE ragline.api_keys k
SET tokens_used = s.tokens
FROM (
    SELECT api_key_id, sum(prompt_tokens + completion_tokens) AS tokens
    FROM ragline.llm_calls
    WHERE api_key_id IS NOT NULL AND kind = 'chat'
    GROUP BY api_key_id
) s
WHERE s.api_key_id = k.key_id;

CREATE FUNCTION ragline.count_api_key_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ragline.api_keys
    SET tokens_used = tokens_used + NEW.prompt_tokens + NEW.completion_tokens
    WHERE key_id = NEW.api_key_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER llm_calls_count_api_key_tokens
    AFTER INSERT ON ragline.llm_calls
    FOR EACH ROW WHEN (NEW.api_key_id IS NOT NULL AND NEW.kind = 'chat')
    EXECUTE FUNCTION ragline.count_api_key_tokens();
