-- How far the replay of each spool segment (`store::spool`) has got: the number of its lines
-- applied, updated in the same transaction as the records of each line, so a replay cut short
-- resumes after the last line applied and never applies one twice.
CREATE TABLE spool_progress (
    segment TEXT PRIMARY KEY,
    lines BIGINT NOT NULL
);
