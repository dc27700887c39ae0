-- The judge's cache (issue 12): one row per judge model, prompt version (and the prompt files' hash),
-- inputs and sample index. A sample's seed is its index, so the same key asks the same question of the
-- same model the same way: a second identical judgement is served from here, and raising the number
-- of samples asks the model only for the new ones. A row holds the parsed score, or why the reply
-- could not be measured (unparseable, failed its schema); a failed call (endpoint unreachable,
-- refused) is never stored, so the next judgement asks again.
CREATE TABLE ragline.judgements (
    judge_model   text             NOT NULL,   -- the model name the endpoint serves
    prompt        text             NOT NULL,   -- name@version of the prompt(s), e.g. claims@1+faithfulness@1
    prompt_sha256 text             NOT NULL,   -- of the prompt files' text: an edit without a new version shows
    inputs_hash   text             NOT NULL,   -- sha256 of the metric, its inputs and the call's parameters
    sample        integer          NOT NULL,   -- 0..k-1; also the seed sent with the call
    metric        text             NOT NULL,   -- faithfulness, relevance, ..., or preference (pairwise)
    score         double precision,            -- NULL: unmeasured, `reason` says why
    reason        text             NOT NULL DEFAULT '',
    details       jsonb            NOT NULL DEFAULT '{}',  -- verdicts, claims; the raw reply when unmeasured
    created_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (judge_model, prompt, prompt_sha256, inputs_hash, sample),
    CHECK (sample >= 0),
    CHECK (score IS NOT NULL OR reason <> '')
);
