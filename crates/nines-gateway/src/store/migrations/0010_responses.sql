-- Responses API conversations, for `previous_response_id`: each response nines delivered, as the
-- input items that continue it (the conversation so far and the response's output), readable only
-- by the key that made it, until it expires.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    items TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX responses_expires_at ON responses (expires_at);
