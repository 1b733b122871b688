-- Background jobs that must run once across replicas, not once per replica
-- (see the SQLite flavour and `db::jobs`).
CREATE TABLE job_runs (
    name        TEXT PRIMARY KEY,
    next_run_at TIMESTAMPTZ NOT NULL,
    ran_by      TEXT NOT NULL,                 -- the claiming replica's id
    ran_at      TIMESTAMPTZ NOT NULL
);
