-- The availability ledger (`telemetry::persist`, docs/sla.md). One row per series and minute;
-- replicas sharing the store add their own deltas to it (`ON CONFLICT ... DO UPDATE SET
-- requests = ledger_buckets.requests + excluded.requests, ...`), so every count is a plain
-- BIGINT column: a TEXT/JSON encoding could not be added to in one statement.
--
-- scope: 'route' (what clients saw) or 'deployment' (what the upstream did); name: the model
-- route or deployment; minute_ms: Unix ms of the minute's start. ttfb_le_N: successes whose time
-- to first byte was at most N ms (and above the previous bound); class_X: failed attempts of
-- failure class X.
CREATE TABLE ledger_buckets (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    fallbacks BIGINT NOT NULL DEFAULT 0,
    sessions BIGINT NOT NULL DEFAULT 0,
    sessions_good BIGINT NOT NULL DEFAULT 0,
    ttfb_le_25 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_50 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_100 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_200 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_300 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_500 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_750 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_1000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_1500 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_2000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_3000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_5000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_10000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_20000 BIGINT NOT NULL DEFAULT 0,
    ttfb_le_30000 BIGINT NOT NULL DEFAULT 0,
    ttfb_over_30000 BIGINT NOT NULL DEFAULT 0,
    class_ok BIGINT NOT NULL DEFAULT 0,
    class_rate_limited BIGINT NOT NULL DEFAULT 0,
    class_quota_exhausted BIGINT NOT NULL DEFAULT 0,
    class_overloaded BIGINT NOT NULL DEFAULT 0,
    class_server BIGINT NOT NULL DEFAULT 0,
    class_timeout BIGINT NOT NULL DEFAULT 0,
    class_connect BIGINT NOT NULL DEFAULT 0,
    class_malformed BIGINT NOT NULL DEFAULT 0,
    class_upstream_auth BIGINT NOT NULL DEFAULT 0,
    class_context_too_long BIGINT NOT NULL DEFAULT 0,
    class_content_filtered BIGINT NOT NULL DEFAULT 0,
    class_client BIGINT NOT NULL DEFAULT 0,
    class_cancelled BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, name, minute_ms)
);
-- Reports and pruning read a time range across every series.
CREATE INDEX ledger_buckets_minute ON ledger_buckets (minute_ms);

-- Periods during which a key slot's breaker was open, as each replica saw them. Written when an
-- incident opens and again when it closes (same key slot and opening time: an upsert).
CREATE TABLE ledger_incidents (
    key_slot TEXT NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    closed_at_ms BIGINT,
    reason TEXT NOT NULL,
    trips BIGINT NOT NULL,
    PRIMARY KEY (key_slot, opened_at_ms)
);
CREATE INDEX ledger_incidents_opened ON ledger_incidents (opened_at_ms);
