-- Background jobs that must run once across replicas, not once per replica
-- (pruning, sweeping): a replica runs one only after claiming its next
-- run with a conditional UPDATE (see `db::jobs`), which exactly one of the
-- replicas racing for it wins.
CREATE TABLE job_runs (
    name        TEXT PRIMARY KEY,
    next_run_at TEXT NOT NULL,
    ran_by      TEXT NOT NULL,                 -- the claiming replica's id
    ran_at      TEXT NOT NULL
);
