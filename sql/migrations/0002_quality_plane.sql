-- The quality plane: lexical (BM25) postings, evaluation variants' own chunks, the query log,
-- evaluation sets and scores, and drift baselines and metrics.

-- Chunks of evaluation variants whose chunker differs from their source's own. Vectors are
-- shared with the ledger (ragline.embeddings), keyed by text.
CREATE TABLE ragline.variant_chunks (
    variant     text        NOT NULL,
    chunk_id    text        NOT NULL,
    source      text        NOT NULL,
    doc_id      text        NOT NULL,
    doc_version integer     NOT NULL,
    chunk_index integer     NOT NULL,
    text        text        NOT NULL,
    text_hash   text        NOT NULL,
    token_count integer     NOT NULL,
    start_char  integer,
    end_char    integer,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    chunker     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (variant, chunk_id),
    FOREIGN KEY (source, doc_id, doc_version)
        REFERENCES ragline.document_versions (source, doc_id, version)
);
CREATE INDEX variant_chunks_by_text_hash ON ragline.variant_chunks (text_hash);
CREATE INDEX variant_chunks_by_document ON ragline.variant_chunks (variant, source, doc_id, doc_version);

-- BM25 postings, one row per (lexeme, distinct chunk text). Lexemes come from Postgres'
-- 'english' text search configuration (stemming, stop words). doc_length is repeated in each
-- posting, and the primary key covers tf and doc_length, so that scoring reads postings from the
-- index alone once the table is vacuumed (search_index vacuums it): 30-90 ms instead of 70-210 ms
-- per query at 3.2M postings.
CREATE TABLE ragline.lexical_texts (
    text_hash  text    PRIMARY KEY,
    doc_length integer NOT NULL
);
CREATE TABLE ragline.lexical_postings (
    lexeme     text    NOT NULL,
    text_hash  text    NOT NULL,
    tf         integer NOT NULL,
    doc_length integer NOT NULL,
    PRIMARY KEY (lexeme, text_hash) INCLUDE (tf, doc_length)
);

-- Collection statistics kept by the same triggers, so that a query reads the document frequency
-- of its own terms and one stats row instead of counting postings and texts each time (measured
-- at 104k chunks: 600 ms per lexical query with the counts, most of it in them and in joining
-- every scored text to the chunks).
CREATE TABLE ragline.lexical_terms (
    lexeme text    PRIMARY KEY,
    df     integer NOT NULL  -- distinct chunk texts containing the lexeme
);
CREATE TABLE ragline.lexical_stats (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    texts        bigint  NOT NULL,
    total_length bigint  NOT NULL
);

-- Statement-level triggers keep the postings in step with every chunk insert and delete, so
-- lexical search can never see a text that is gone or miss one that arrived.
-- Both triggers take one transaction-level advisory lock first: without it, a delete and an
-- insert of the same text in two concurrent transactions could each act on a snapshot that
-- misses the other, and leave a live text without postings (or a dead one with them).
CREATE FUNCTION ragline.add_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246312);
    WITH fresh AS (
        SELECT DISTINCT ON (n.text_hash) n.text_hash, n.text
        FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM ragline.lexical_texts l WHERE l.text_hash = n.text_hash)
    ), terms AS (
        SELECT f.text_hash, t.lexeme, cardinality(t.positions) AS tf
        FROM fresh f CROSS JOIN LATERAL unnest(to_tsvector('english', f.text)) t
    ), lengths AS (
        SELECT f.text_hash, coalesce(sum(t.tf), 0)::integer AS doc_length
        FROM fresh f LEFT JOIN terms t USING (text_hash)
        GROUP BY f.text_hash
    ), texts AS (
        INSERT INTO ragline.lexical_texts (text_hash, doc_length)
        SELECT text_hash, doc_length FROM lengths
        ON CONFLICT (text_hash) DO NOTHING
        RETURNING text_hash, doc_length
    ), postings AS (
        INSERT INTO ragline.lexical_postings (lexeme, text_hash, tf, doc_length)
        SELECT t.lexeme, t.text_hash, t.tf, x.doc_length
        FROM terms t JOIN texts x USING (text_hash)
        ON CONFLICT (lexeme, text_hash) DO NOTHING
        RETURNING lexeme
    ), frequencies AS (
        INSERT INTO ragline.lexical_terms AS d (lexeme, df)
        SELECT lexeme, count(*) FROM postings GROUP BY lexeme
        ON CONFLICT (lexeme) DO UPDATE SET df = d.df + EXCLUDED.df
    )
    UPDATE ragline.lexical_stats
    SET texts = texts + (SELECT count(*) FROM texts),
        total_length = total_length + (SELECT coalesce(sum(doc_length), 0) FROM texts);
    RETURN NULL;
END
$$;

CREATE FUNCTION ragline.drop_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246312);
    -- A text leaves the postings when no chunk of any chunk set still has it.
    WITH gone AS (
        SELECT DISTINCT ON (o.text_hash) o.text_hash, o.text
        FROM old_rows o
        WHERE NOT EXISTS (SELECT 1 FROM ragline.chunks c WHERE c.text_hash = o.text_hash)
          AND NOT EXISTS (SELECT 1 FROM ragline.variant_chunks v WHERE v.text_hash = o.text_hash)
    ), postings AS (
        DELETE FROM ragline.lexical_postings p
        USING gone g, unnest(to_tsvector('english', g.text)) t
        WHERE p.lexeme = t.lexeme AND p.text_hash = g.text_hash
        RETURNING p.lexeme
    ), frequencies AS (
        UPDATE ragline.lexical_terms d SET df = d.df - x.n
        FROM (SELECT lexeme, count(*) AS n FROM postings GROUP BY lexeme) x
        WHERE d.lexeme = x.lexeme
    ), texts AS (
        DELETE FROM ragline.lexical_texts l USING gone g WHERE l.text_hash = g.text_hash
        RETURNING l.doc_length
    )
    UPDATE ragline.lexical_stats
    SET texts = texts - (SELECT count(*) FROM texts),
        total_length = total_length - (SELECT coalesce(sum(doc_length), 0) FROM texts);
    RETURN NULL;
END
$$;

CREATE TRIGGER chunks_add_lexical AFTER INSERT ON ragline.chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.add_lexical_texts();
CREATE TRIGGER chunks_drop_lexical AFTER DELETE ON ragline.chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.drop_lexical_texts();
CREATE TRIGGER variant_chunks_add_lexical AFTER INSERT ON ragline.variant_chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.add_lexical_texts();
CREATE TRIGGER variant_chunks_drop_lexical AFTER DELETE ON ragline.variant_chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.drop_lexical_texts();

-- Chunks that existed before this migration.
INSERT INTO ragline.lexical_texts (text_hash, doc_length)
SELECT c.text_hash, coalesce(sum(cardinality(t.positions)), 0)
FROM (SELECT DISTINCT ON (text_hash) text_hash, text FROM ragline.chunks) c
LEFT JOIN LATERAL unnest(to_tsvector('english', c.text)) t ON true
GROUP BY c.text_hash;
INSERT INTO ragline.lexical_postings (lexeme, text_hash, tf, doc_length)
SELECT t.lexeme, c.text_hash, cardinality(t.positions), l.doc_length
FROM (SELECT DISTINCT ON (text_hash) text_hash, text FROM ragline.chunks) c
JOIN ragline.lexical_texts l USING (text_hash)
CROSS JOIN LATERAL unnest(to_tsvector('english', c.text)) t;
INSERT INTO ragline.lexical_terms (lexeme, df)
SELECT lexeme, count(*) FROM ragline.lexical_postings GROUP BY lexeme;
INSERT INTO ragline.lexical_stats (texts, total_length)
SELECT count(*), coalesce(sum(doc_length), 0) FROM ragline.lexical_texts;

-- Every query asked through ragline's retrieval (unless logging is off), for audit and query drift.
CREATE TABLE ragline.query_log (
    query_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asked_at   timestamptz      NOT NULL DEFAULT now(),
    query      text             NOT NULL,
    strategy   text             NOT NULL,
    variant    text,
    k          integer          NOT NULL,
    filters    jsonb            NOT NULL DEFAULT '{}',
    results    jsonb            NOT NULL,
    latency_ms double precision NOT NULL,
    caller     text             NOT NULL DEFAULT 'python',
    model_id   text,
    embedding  vector
);
CREATE INDEX query_log_by_time ON ragline.query_log (asked_at);

-- Evaluation questions of every configured set; relevant maps a document or chunk id to its gain.
CREATE TABLE ragline.eval_questions (
    eval_set    text        NOT NULL,
    question_id text        NOT NULL,
    question    text        NOT NULL,
    relevant    jsonb       NOT NULL,
    answer      text,
    kind        text,
    synthetic   boolean     NOT NULL DEFAULT false,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (eval_set, question_id)
);

-- Per-question retrieval results of one daily partition: what came back and how it scored.
CREATE TABLE ragline.retrieval_results (
    partition   date             NOT NULL,
    variant     text             NOT NULL,
    eval_set    text             NOT NULL,
    question_id text             NOT NULL,
    recall      double precision NOT NULL,
    precision   double precision NOT NULL,
    mrr         double precision NOT NULL,
    ndcg        double precision NOT NULL,
    hit         double precision NOT NULL,
    latency_ms  double precision NOT NULL,
    retrieved   jsonb            NOT NULL,
    -- The question's text and judgements: the regression gate pairs only identical questions.
    question_hash text           NOT NULL,
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, variant, eval_set, question_id)
);

-- Aggregates per partition, variant and evaluation set.
CREATE TABLE ragline.retrieval_scores (
    partition      date             NOT NULL,
    variant        text             NOT NULL,
    eval_set       text             NOT NULL,
    questions      integer          NOT NULL,
    k              integer          NOT NULL,
    recall         double precision NOT NULL,
    precision      double precision NOT NULL,
    mrr            double precision NOT NULL,
    ndcg           double precision NOT NULL,
    hit_rate       double precision NOT NULL,
    latency_p50_ms double precision NOT NULL,
    latency_p95_ms double precision NOT NULL,
    config         jsonb            NOT NULL DEFAULT '{}',
    -- The regression gate's verdict for this row (null: nothing to compare with). A later
    -- partition compares against the latest one that did not fail, so a drop keeps failing.
    gate_passed    boolean,
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, variant, eval_set)
);

-- A/B: each variant against the control variant, paired over the same questions.
CREATE TABLE ragline.variant_comparisons (
    partition     date             NOT NULL,
    eval_set      text             NOT NULL,
    control       text             NOT NULL,
    variant       text             NOT NULL,
    questions     integer          NOT NULL,
    ndcg_control  double precision NOT NULL,
    ndcg_variant  double precision NOT NULL,
    diff          double precision NOT NULL,
    low           double precision NOT NULL,
    high          double precision NOT NULL,
    verdict       text             NOT NULL,
    computed_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, eval_set, variant)
);

-- The pinned corpus snapshot that drift is measured against (one per embedding model).
CREATE TABLE ragline.drift_baseline (
    model_id  text        NOT NULL,
    source    text        NOT NULL,
    text_hash text        NOT NULL,
    embedding vector      NOT NULL,
    pinned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, source, text_hash)
);

-- Drift test results per daily partition: corpus against the baseline per source, and queries
-- against the corpus and against earlier days.
CREATE TABLE ragline.drift_metrics (
    partition   date             NOT NULL,
    scope       text             NOT NULL,
    subject     text             NOT NULL,
    p_value     double precision,
    mmd2        double precision,
    effect      double precision,
    n_baseline  integer          NOT NULL,
    n_current   integer          NOT NULL,
    significant boolean          NOT NULL,
    alarm       boolean          NOT NULL,
    reason      text             NOT NULL DEFAULT '',
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, scope, subject)
);
