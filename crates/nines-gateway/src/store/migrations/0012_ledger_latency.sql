-- The whole request's latency as a sketch (issue 20, latency objectives such as
-- `latency_p99 = "30s"`): the same shape as `ledger_ttfb` (one row per series, minute and
-- DDSketch bin, added to by every replica in one upsert). Route series only.
CREATE TABLE ledger_latency (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    bin BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    PRIMARY KEY (scope, name, minute_ms, bin)
);
CREATE INDEX ledger_latency_minute ON ledger_latency (minute_ms);
