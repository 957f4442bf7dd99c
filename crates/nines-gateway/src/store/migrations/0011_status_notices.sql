-- Operator notices on the status page (issue 20): incident updates and scheduled maintenance,
-- posted through the admin API or `nines status notice add`. Times are Unix ms; `models` is a
-- JSON array of model names (empty: every model).
CREATE TABLE status_notices (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    models TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    resolved_at BIGINT
);
CREATE INDEX status_notices_created ON status_notices (created_at);
