-- The cost ledger (ragline.costs): one row per model call, chat or embedding, from an asset run, the
-- CLI or the API. Never a key and never the prompt: the endpoint is host[:port] only. cost_usd is
-- priced when the call is recorded, from the prices: block then in force; NULL when the model has no
-- price (price_known false), so a sum over unpriced calls is never mistaken for zero.
CREATE TABLE ragline.llm_calls (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    kind              text        NOT NULL CHECK (kind IN ('chat', 'embedding')),
    model             text        NOT NULL,
    endpoint          text        NOT NULL,  -- host[:port], or 'local' for the in-process model
    prompt_tokens     integer     NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer     NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    texts             integer     NOT NULL DEFAULT 0 CHECK (texts >= 0),  -- inputs of an embedding call
    cached            boolean     NOT NULL DEFAULT false,
    ok                boolean     NOT NULL,
    error             text,                  -- scrubbed, one line
    latency_ms        double precision NOT NULL,
    cost_usd          numeric(14, 8),        -- NULL: no price for the model
    price_known       boolean     NOT NULL,
    route             text,                  -- the router's decision and its reason
    caller_kind       text        NOT NULL CHECK (caller_kind IN ('asset', 'cli', 'api')),
    asset_key         text,
    partition_key     text,
    run_id            text,
    api_key_id        bigint
);
-- Roll-ups: a day's calls (llm_costs, ragline status), then by asset, model or caller.
CREATE INDEX llm_calls_by_time ON ragline.llm_calls (at);
CREATE INDEX llm_calls_by_asset ON ragline.llm_calls (asset_key, partition_key, at) WHERE asset_key IS NOT NULL;
CREATE INDEX llm_calls_by_run ON ragline.llm_calls (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX llm_calls_by_api_key ON ragline.llm_calls (api_key_id, at) WHERE api_key_id IS NOT NULL;
