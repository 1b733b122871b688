-- Data-protection requests (docs/PRIVACY.md).
--
-- A restricted device (the owner asked for restriction of processing) is
-- updated as before, but nothing beyond what updating needs is recorded
-- about it: no last-seen state, no stored reports.
ALTER TABLE devices ADD COLUMN restricted_at TEXT;

-- One row per erased unit, under its pseudonym (a keyed hash of the serial
-- with the server's pseudonym key), never the serial: a second request for
-- the same serial is answered "already erased" and changes nothing.
CREATE TABLE erasures (
    pseudonym TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL,
    erased_by TEXT NOT NULL,                -- the admin token's label
    reason    TEXT NOT NULL
);

-- Retention prunes reports by age.
CREATE INDEX reports_at ON reports (at);
