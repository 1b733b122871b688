-- Device groups: static ones list their serials (device_group_members);
-- dynamic ones are a filter judged when a device checks in. A group may
-- carry a maintenance window (JSON: time zone and weekly slots) outside
-- which its devices are offered no update.
CREATE TABLE device_groups (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('static', 'dynamic')),
    filter     TEXT,
    maintenance_window TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CHECK ((kind = 'dynamic') = (filter IS NOT NULL))
);

CREATE TABLE device_group_members (
    group_name TEXT NOT NULL REFERENCES device_groups (name) ON DELETE CASCADE,
    serial     TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    PRIMARY KEY (group_name, serial)
);
CREATE INDEX device_group_members_serial ON device_group_members (serial);

-- Free-form labels on devices, for dynamic groups (tag = studio).
CREATE TABLE device_tags (
    serial TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (serial, tag)
);

-- Staged rollouts of a release. Membership is computed from a hash of the
-- rollout id and the serial, never stored. At most one rollout of a
-- release is active (running or paused) at a time.
CREATE TABLE rollouts (
    id                        TEXT PRIMARY KEY,
    release_id                BIGINT NOT NULL REFERENCES releases (id),
    group_name                TEXT,                 -- a group name; kept when the group is deleted later
    phases                    TEXT NOT NULL,        -- JSON array of percentages, strictly increasing
    phase                     INTEGER NOT NULL,     -- index of the current phase
    state                     TEXT NOT NULL CHECK (state IN ('running', 'paused', 'aborted', 'finished')),
    paused_reason             TEXT,
    soak_secs                 BIGINT,               -- NULL: advanced by hand only
    failure_threshold_percent REAL NOT NULL,
    min_sample                INTEGER NOT NULL,
    phase_started_at          TEXT NOT NULL,
    created_by                TEXT NOT NULL,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (release_id) WHERE state IN ('running', 'paused');
CREATE INDEX rollouts_state ON rollouts (state);

CREATE TABLE rollout_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,                        -- a token's label, or 'system'
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);

-- The release a device was last offered, written with its last-seen state,
-- for the rollouts' "offered" counts.
ALTER TABLE devices ADD COLUMN offered_release_id BIGINT;
ALTER TABLE devices ADD COLUMN offered_at TEXT;
CREATE INDEX devices_offered ON devices (offered_release_id);
