-- Documents, their versions, quarantine, chunks, the embedding ledger and the serving model.
-- Indexes for search (HNSW, GIN) are not here: search_index builds them after bulk loads.

CREATE TABLE ragline.documents (
    source        text        NOT NULL,
    doc_id        text        NOT NULL,
    path          text        NOT NULL,
    version       integer     NOT NULL CHECK (version >= 1),
    content_hash  text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('live', 'deleted')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (source, doc_id)
);

CREATE TABLE ragline.document_versions (
    source       text        NOT NULL,
    doc_id       text        NOT NULL,
    version      integer     NOT NULL,
    content_hash text        NOT NULL,
    text         text        NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}',
    char_count   integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, doc_id, version),
    FOREIGN KEY (source, doc_id) REFERENCES ragline.documents (source, doc_id)
);

CREATE TABLE ragline.quarantine (
    source        text        NOT NULL,
    path          text        NOT NULL,
    reason        text        NOT NULL,
    detail        text        NOT NULL DEFAULT '',
    size_bytes    bigint,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path)
);

CREATE TABLE ragline.chunks (
    chunk_id    text        PRIMARY KEY,
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
    FOREIGN KEY (source, doc_id, doc_version)
        REFERENCES ragline.document_versions (source, doc_id, version)
);
CREATE INDEX chunks_by_document ON ragline.chunks (source, doc_id, doc_version);
CREATE INDEX chunks_by_text_hash ON ragline.chunks (text_hash);

-- The ledger: one vector per (text, model), shared by every chunk with that text.
CREATE TABLE ragline.embeddings (
    text_hash   text        NOT NULL,
    model_id    text        NOT NULL,
    dim         integer     NOT NULL,
    embedding   vector      NOT NULL,
    token_count integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (text_hash, model_id),
    CHECK (vector_dims(embedding) = dim)
);

-- The model whose vectors the serving view exposes; written by search_index.
CREATE TABLE ragline.serving_model (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    model_id   text        NOT NULL,
    dim        integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
