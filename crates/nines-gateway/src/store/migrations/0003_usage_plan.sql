-- The routing plan (order, reasons, skips) and the attempt trail (key slot, failure class,
-- status, time of each attempt) of every request, as the request log line writes them.
ALTER TABLE usage_records ADD COLUMN plan TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN attempt_trail TEXT NOT NULL DEFAULT '';
