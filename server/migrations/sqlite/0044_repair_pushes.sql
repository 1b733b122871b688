-- Repair pushes: a technician assigns a release to one device under repair,
-- which its next update check is offered even where the device is not
-- otherwise entitled (entitlement code `repair_grant`). `version` NULL
-- means "the newest compatible release". At most one push per device is
-- active; an active push whose `expires_at` has passed no longer entitles
-- anything and is marked `expired` when the next push is made.
CREATE TABLE repair_pushes (
    id           TEXT PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    product_line TEXT NOT NULL,
    channel      TEXT NOT NULL,
    version      TEXT,
    rma          TEXT NOT NULL,
    reason       TEXT NOT NULL,
    technician   TEXT NOT NULL,                -- the pushing token's label
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'active'
                 CHECK (state IN ('active', 'cancelled', 'done', 'expired')),
    ended_at     TEXT,
    ended_by     TEXT,                         -- who cancelled it; 'device' when done, 'server' when expired
    done_version TEXT,                         -- the version the device reported installed
    CHECK ((state = 'active') = (ended_at IS NULL))
);
CREATE UNIQUE INDEX repair_pushes_one_active ON repair_pushes (serial) WHERE state = 'active';
CREATE INDEX repair_pushes_serial ON repair_pushes (serial, created_at);
