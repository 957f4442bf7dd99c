-- Time to first byte as a sketch (issue 20; `telemetry::ledger::sketch`): one row per series,
-- minute and DDSketch bin (α = 1 %: bin = ceil(ln(ms) / ln((1 + 0.01) / (1 - 0.01)))), so a
-- replica's delta is still one additive upsert (`samples = ledger_ttfb.samples + excluded.samples`)
-- and percentiles of any window are read from the summed bins.
CREATE TABLE ledger_ttfb (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    bin BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    PRIMARY KEY (scope, name, minute_ms, bin)
);
CREATE INDEX ledger_ttfb_minute ON ledger_ttfb (minute_ms);

-- The fixed histogram's counts move into the bins of their buckets' upper bounds (what reports
-- read them as before), the unbounded bucket just above 30 s; a test checks these bins against
-- the sketch's mapping. Then the histogram's columns go.
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 161, ttfb_le_25 FROM ledger_buckets WHERE ttfb_le_25 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 196, ttfb_le_50 FROM ledger_buckets WHERE ttfb_le_50 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 231, ttfb_le_100 FROM ledger_buckets WHERE ttfb_le_100 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 265, ttfb_le_200 FROM ledger_buckets WHERE ttfb_le_200 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 286, ttfb_le_300 FROM ledger_buckets WHERE ttfb_le_300 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 311, ttfb_le_500 FROM ledger_buckets WHERE ttfb_le_500 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 331, ttfb_le_750 FROM ledger_buckets WHERE ttfb_le_750 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 346, ttfb_le_1000 FROM ledger_buckets WHERE ttfb_le_1000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 366, ttfb_le_1500 FROM ledger_buckets WHERE ttfb_le_1500 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 381, ttfb_le_2000 FROM ledger_buckets WHERE ttfb_le_2000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 401, ttfb_le_3000 FROM ledger_buckets WHERE ttfb_le_3000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 426, ttfb_le_5000 FROM ledger_buckets WHERE ttfb_le_5000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 461, ttfb_le_10000 FROM ledger_buckets WHERE ttfb_le_10000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 496, ttfb_le_20000 FROM ledger_buckets WHERE ttfb_le_20000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 516, ttfb_le_30000 FROM ledger_buckets WHERE ttfb_le_30000 > 0;
INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples)
    SELECT scope, name, minute_ms, 517, ttfb_over_30000 FROM ledger_buckets WHERE ttfb_over_30000 > 0;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_25;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_50;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_100;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_200;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_300;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_500;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_750;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_1000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_1500;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_2000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_3000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_5000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_10000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_20000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_le_30000;
ALTER TABLE ledger_buckets DROP COLUMN ttfb_over_30000;
