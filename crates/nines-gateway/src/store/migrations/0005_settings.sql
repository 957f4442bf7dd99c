-- Values the replicas sharing a store must agree on, generated once by whichever starts first:
-- the secret that signs video job ids and status page sessions.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
