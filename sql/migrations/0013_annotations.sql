-- Human evaluation (issue 12): answers queued for people to label, their labels, and the daily
-- agreement between annotators and between the judge and people.

-- One row per answer queued for labelling. It keeps a copy of what was judged (question, answer,
-- context, reference, the judge's scores and the similarity scores at selection), so a label stays
-- meaningful after its partition is rescored.
CREATE TABLE ragline.annotation_items (
    item_id       bigserial   PRIMARY KEY,
    partition     date        NOT NULL,   -- the answer_scores partition it was selected from
    eval_set      text        NOT NULL,
    variant       text        NOT NULL,
    question_id   text        NOT NULL,
    question_hash text        NOT NULL,
    answer_hash   text        NOT NULL,   -- sha256 of the answer's text
    reasons       text[]      NOT NULL,   -- low_confidence, disagreement, random
    question      text        NOT NULL,
    answer        text        NOT NULL,
    context       jsonb       NOT NULL DEFAULT '[]',  -- [{number, chunk_id, document, text}]
    reference     text,
    judge         jsonb       NOT NULL DEFAULT '{}',  -- metric -> {mean, low, high, unmeasured}
    similarity    jsonb       NOT NULL DEFAULT '{}',  -- metric -> value
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'labelled', 'promoted')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The same answer to the same question is queued once, whichever day selects it again.
    UNIQUE (eval_set, variant, question_id, question_hash, answer_hash)
);

CREATE INDEX annotation_items_status ON ragline.annotation_items (status, item_id);

-- One label per annotator and item: labelling an item again updates it. Each judgement is yes (1),
-- partly (0.5), no (0) or skipped (NULL).
CREATE TABLE ragline.human_labels (
    label_id   bigserial        PRIMARY KEY,
    item_id    bigint           NOT NULL REFERENCES ragline.annotation_items ON DELETE CASCADE,
    annotator  text             NOT NULL,
    faithful   double precision CHECK (faithful IN (0, 0.5, 1)),
    relevant   double precision CHECK (relevant IN (0, 0.5, 1)),
    correct    double precision CHECK (correct IN (0, 0.5, 1)),
    note       text             NOT NULL DEFAULT '',
    source     text             NOT NULL CHECK (source IN ('web', 'cli', 'label_studio')),
    created_at timestamptz      NOT NULL DEFAULT now(),
    updated_at timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (item_id, annotator)
);

-- Agreement per day over the labels given until that day's end: between annotators (Krippendorff's
-- alpha, Cohen's kappa) and between the judge and people (kappa on yes/partly/no bins, Spearman,
-- the share of matching bins).
CREATE TABLE ragline.annotation_agreement (
    partition   date             NOT NULL,
    scope       text             NOT NULL CHECK (scope IN ('annotators', 'judge')),
    label       text             NOT NULL,   -- faithful, relevant, correct
    statistic   text             NOT NULL,   -- krippendorff_alpha, cohen_kappa, spearman, bin_match
    value       double precision,            -- NULL: not enough labels to compute it
    n           integer          NOT NULL,   -- items it was computed over
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, scope, label, statistic)
);
