-- The HTTP API (ragline serve): its keys and a log of every request it answered or refused.
-- A key is stored only as the sha256 of its text: the key is 32 random bytes, so a fast hash is
-- enough (nothing to brute-force, unlike a password) and lets a request be checked in one lookup.
CREATE TABLE ragline.api_keys (
    key_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text        NOT NULL UNIQUE,
    key_hash        text        NOT NULL UNIQUE,   -- sha256 hex of the key
    key_prefix      text        NOT NULL,          -- its first characters, to tell keys apart in a list
    rate_per_minute integer     CHECK (rate_per_minute > 0),  -- NULL: no rate limit
    token_budget    bigint      CHECK (token_budget > 0),     -- NULL: no budget
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    -- The rate limiter's state (GCRA): when the key's next request is due if it keeps to its rate.
    rate_tat        timestamptz
);

CREATE TABLE ragline.api_requests (
    request_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    key_id            bigint      REFERENCES ragline.api_keys (key_id) ON DELETE SET NULL,
    method            text        NOT NULL,
    route             text        NOT NULL,    -- the route's template (/v1/search), or the path cut short
    status            integer     NOT NULL,
    latency_ms        double precision NOT NULL,
    models            text[]      NOT NULL DEFAULT '{}',
    prompt_tokens     integer     NOT NULL DEFAULT 0,
    completion_tokens integer     NOT NULL DEFAULT 0,
    cost              double precision,        -- NULL: no priced model call
    cached            boolean     NOT NULL DEFAULT false,
    error             text                     -- scrubbed, one line
);
CREATE INDEX api_requests_by_key ON ragline.api_requests (key_id, at);
CREATE INDEX api_requests_at ON ragline.api_requests (at);
