-- The answer cache: a response stored under the exact key of its request (model, prompt version,
-- messages, parameters) and, for semantic hits, the question's query vector beside the retrieved
-- context's key. Each row records the served data it was built on (ragline.served_data: every
-- source's published generation and the serving model); once that changes the row never hits
-- again and purge deletes it.
CREATE TABLE ragline.answer_cache (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exact_key      text        NOT NULL UNIQUE,  -- sha256 hex of the request
    model          text,                         -- the rest: set when stored with a semantic key
    prompt_version text,
    params_hash    text,
    context_key    text,
    query_vector   vector,                       -- any dimension: the local model's, whichever it is
    payload        jsonb       NOT NULL,
    served         jsonb       NOT NULL,         -- ragline.served_data.state when it was stored
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    hits           integer     NOT NULL DEFAULT 0,
    last_hit_at    timestamptz
);
-- A semantic lookup compares vectors only among rows of one model, prompt, parameters and context:
-- a handful, so an exact scan of them needs no ANN index.
CREATE INDEX answer_cache_semantic ON ragline.answer_cache (model, prompt_version, params_hash, context_key)
    WHERE query_vector IS NOT NULL;
CREATE INDEX answer_cache_expiry ON ragline.answer_cache (expires_at);
CREATE INDEX answer_cache_recency ON ragline.answer_cache ((coalesce(last_hit_at, created_at)));
