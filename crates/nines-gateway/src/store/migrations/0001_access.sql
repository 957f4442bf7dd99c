-- Organisations, users, virtual keys (hashed) and usage records. Times are Unix milliseconds;
-- limits are JSON text (the `Limits` shape of the config file and the admin API).
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    limits TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    limits TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    models TEXT,
    limits TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    key_id TEXT,
    user_id TEXT,
    org_id TEXT,
    model TEXT NOT NULL,
    deployment TEXT,
    endpoint TEXT NOT NULL,
    stream BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    tokens_in BIGINT,
    tokens_out BIGINT,
    usage_estimated BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    ttfb_ms DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);
-- Two indexes only: every index is paid on each insert. Spend and usage queries by user or
-- org scan the time range (a day or a month) through usage_time.
CREATE INDEX usage_key_time ON usage_records (key_id, started_at);
CREATE INDEX usage_time ON usage_records (started_at);
