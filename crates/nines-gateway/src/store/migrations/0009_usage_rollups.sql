-- Usage accounting by the minute (issue 20): one row per minute, organisation, user, key, model,
-- deployment and fallback, with the counts, tokens and cost of its requests. Spend, budgets and
-- usage reports read these rows; per-request rows in `usage_records` are opt-in detail
-- (`store.request_records`). Replicas sharing the store add their own sums to the same row
-- (`ON CONFLICT ... DO UPDATE SET requests = usage_rollups.requests + excluded.requests, ...`),
-- so the key columns are NOT NULL ('' for none): a NULL would never conflict, and each flush
-- would add a row instead of adding to one.
--
-- errors: requests that ended with a status of 400 or more (refusals, failures, client gone).
CREATE TABLE usage_rollups (
    minute_ms BIGINT NOT NULL,
    org_id TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    key_id TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    deployment TEXT NOT NULL DEFAULT '',
    fallback TEXT NOT NULL DEFAULT '',
    requests BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (minute_ms, org_id, user_id, key_id, model, deployment, fallback)
);

-- Every request recorded so far, rolled up by the minute it started in, so spend and budgets
-- read the same before and after this migration (a test checks it on SQLite and Postgres).
INSERT INTO usage_rollups (minute_ms, org_id, user_id, key_id, model, deployment, fallback,
    requests, errors, tokens_in, tokens_out, cost)
SELECT (started_at / 60000) * 60000, COALESCE(org_id, ''), COALESCE(user_id, ''),
    COALESCE(key_id, ''), model, COALESCE(deployment, ''), COALESCE(fallback, ''),
    COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(COALESCE(tokens_in, 0)),
    SUM(COALESCE(tokens_out, 0)), SUM(cost)
FROM usage_records
GROUP BY (started_at / 60000) * 60000, COALESCE(org_id, ''), COALESCE(user_id, ''),
    COALESCE(key_id, ''), model, COALESCE(deployment, ''), COALESCE(fallback, '');
