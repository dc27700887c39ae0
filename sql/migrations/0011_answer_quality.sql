-- Answer quality (issue 12): per question, what an answer variant (retrieval variant x generation
-- model x prompt version) answered on an evaluation set, and every metric of it; the aggregates per
-- partition with their intervals and gate verdicts; and the A/B comparisons between answer variants.

-- One row per partition, eval set, answer variant and question: the answer and what it was built on.
CREATE TABLE ragline.answer_results (
    partition         date        NOT NULL,
    eval_set          text        NOT NULL,
    variant           text        NOT NULL,   -- the answer variant's name
    question_id       text        NOT NULL,
    question_hash     text        NOT NULL,   -- of the question's text and judgements (scoring.question_hash)
    question          text        NOT NULL,
    reference         text,                   -- the eval set's reference answer, if it has one
    answer            text        NOT NULL,   -- '' when it abstained
    abstained         boolean     NOT NULL,
    answer_id         bigint,                 -- ragline.answers row (no foreign key: gc may trim answers)
    context_chunk_ids text[]      NOT NULL DEFAULT '{}',  -- in prompt order
    context           jsonb       NOT NULL DEFAULT '[]',  -- [{number, chunk_id, document, text}] as judged
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, eval_set, variant, question_id)
);

-- One row per question and metric (judge metrics and similarity metrics alike). A judge metric keeps
-- every sample; an unmeasured sample is NULL in `samples` with its reason in `reasons`, and a metric
-- with no measured sample has mean NULL: it is counted, never dropped or averaged as 0.
CREATE TABLE ragline.answer_metric_results (
    partition   date             NOT NULL,
    eval_set    text             NOT NULL,
    variant     text             NOT NULL,
    question_id text             NOT NULL,
    metric      text             NOT NULL,   -- faithfulness, relevance, context_precision, context_recall,
                                             -- correctness, exact_match, token_f1, rouge_l,
                                             -- embedding_cosine, bertscore_f1
    kind        text             NOT NULL,   -- judge | similarity
    mean        double precision,            -- NULL: unmeasured (or not applicable: see reasons)
    low         double precision,            -- judge: bootstrap interval over its samples
    high        double precision,
    spread      double precision,            -- judge: standard deviation between samples
    samples     jsonb            NOT NULL DEFAULT '[]',  -- [score or null, ...]
    unmeasured  integer          NOT NULL DEFAULT 0,     -- samples that failed or could not be parsed
    reasons     jsonb            NOT NULL DEFAULT '[]',  -- why each unmeasured sample failed
    details     jsonb            NOT NULL DEFAULT '{}',  -- e.g. faithfulness: the claims and verdicts
    cached      integer          NOT NULL DEFAULT 0,     -- samples served from the judgement cache
    PRIMARY KEY (partition, eval_set, variant, question_id, metric),
    FOREIGN KEY (partition, eval_set, variant, question_id)
        REFERENCES ragline.answer_results ON DELETE CASCADE
);

-- Aggregates per partition, eval set, answer variant and metric: mean over the questions measured,
-- bootstrap interval over questions, how many were not measured, and the regression gate's verdict.
CREATE TABLE ragline.answer_scores (
    partition   date             NOT NULL,
    eval_set    text             NOT NULL,
    variant     text             NOT NULL,
    metric      text             NOT NULL,
    kind        text             NOT NULL,   -- judge | similarity
    questions   integer          NOT NULL,   -- questions asked
    measured    integer          NOT NULL,   -- questions with a value
    unmeasured  integer          NOT NULL,   -- questions without one (every sample failed)
    mean        double precision,
    low         double precision,
    high        double precision,
    config      jsonb            NOT NULL DEFAULT '{}',  -- the answer variant: retrieval, model, prompt, judge
    gate_passed boolean,                     -- NULL: not gated or nothing to compare with
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, eval_set, variant, metric)
);

-- A/B between answer variants and the gate against the baseline partition: pointwise (paired
-- bootstrap of a metric's per-question difference) or pairwise (the judge's preference, both orders).
CREATE TABLE ragline.answer_comparisons (
    partition   date             NOT NULL,
    eval_set    text             NOT NULL,
    baseline    text             NOT NULL,   -- the control variant, or the baseline partition's date
    candidate   text             NOT NULL,
    metric      text             NOT NULL,   -- a metric name, or 'preference' for pairwise
    kind        text             NOT NULL,   -- ab_pointwise | ab_pairwise | gate
    questions   integer          NOT NULL,
    mean_baseline  double precision,
    mean_candidate double precision,
    diff        double precision,
    low         double precision,
    high        double precision,
    verdict     text             NOT NULL,
    details     jsonb            NOT NULL DEFAULT '{}',  -- pairwise: position-consistent share, ties
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, eval_set, baseline, candidate, metric, kind)
);
