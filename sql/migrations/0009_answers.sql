-- Every answer ragline gave (ragline.answer.answering): the question, the text and its citations,
-- or why it abstained; the prompt version, model and route that made it, what it cost in tokens and
-- time, the guardrails' flags, and the published data it was answered from (each source's
-- generation and the chunks in the context), so that an answer can be audited and reproduced.
CREATE TABLE ragline.answers (
    answer_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    question          text             NOT NULL,
    answer            text             NOT NULL,
    abstained         boolean          NOT NULL,
    reason            text,                       -- why it abstained or was refused
    citations         jsonb            NOT NULL DEFAULT '[]',  -- [{number, chunk_id, document, path, start_char, end_char}]
    prompt_name       text             NOT NULL,
    prompt_version    integer          NOT NULL,
    prompt_sha256     text             NOT NULL,  -- of the prompt file: an edit without a new version shows
    model             text,                       -- NULL when no model was called (abstained)
    route             text,                       -- the router's reason for the model, if routed
    cached            boolean          NOT NULL DEFAULT false,
    prompt_tokens     integer          NOT NULL DEFAULT 0,
    completion_tokens integer          NOT NULL DEFAULT 0,
    support           double precision,           -- the best passage's cosine similarity to the question
    timings_ms        jsonb            NOT NULL DEFAULT '{}',
    guardrails        jsonb            NOT NULL DEFAULT '{}',  -- flags: injection, invalid citations, output checks
    generations       jsonb            NOT NULL DEFAULT '{}',  -- {source: published generation} when answered
    context_chunk_ids text[]           NOT NULL DEFAULT '{}',  -- in prompt order
    query_id          bigint                      -- the retrieval's row in query_log, if logged
);
CREATE INDEX answers_by_time ON ragline.answers (created_at);
