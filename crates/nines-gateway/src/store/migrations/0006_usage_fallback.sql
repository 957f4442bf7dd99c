-- The fallback model that served a request, when one did (degrade last: issue 16).
ALTER TABLE usage_records ADD COLUMN fallback TEXT;
