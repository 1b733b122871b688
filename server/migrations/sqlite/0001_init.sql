-- Firmup schema, SQLite flavour. Timestamps are RFC 3339 UTC text, dates
-- are YYYY-MM-DD text; both sort correctly as text.

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,          -- hex sha256 of the secret; the secret is never stored
    role        TEXT NOT NULL CHECK (role IN ('admin', 'release_engineer', 'technician', 'device')),
    serial      TEXT,                          -- device tokens are bound to one serial
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CHECK ((role = 'device') = (serial IS NOT NULL))
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor_id    TEXT,                          -- token id; NULL for the server's own CLI
    actor_label TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE product_lines (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('hardware', 'software')),
    warranty_months INTEGER NOT NULL DEFAULT 12,
    created_at      TEXT NOT NULL
);

CREATE TABLE models (
    id           TEXT PRIMARY KEY,
    product_line TEXT NOT NULL REFERENCES product_lines (id),
    name         TEXT NOT NULL,
    launched     TEXT,
    eol          TEXT                          -- discontinued on this date; NULL while in production
);

CREATE TABLE model_hw_ids (
    hw_id    TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE
);

CREATE TABLE images (
    sha256     TEXT PRIMARY KEY,
    length     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE releases (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    product_line     TEXT NOT NULL REFERENCES product_lines (id),
    channel          TEXT NOT NULL,
    version          TEXT NOT NULL,
    manifest_version INTEGER NOT NULL,
    security_counter INTEGER NOT NULL,
    requires         TEXT,
    hw_compat        TEXT NOT NULL,            -- JSON array of hardware ids
    envelope         BLOB NOT NULL,            -- exactly as signed and submitted
    payload_sha256   TEXT NOT NULL,
    release_notes    TEXT,
    free_for_all     INTEGER NOT NULL DEFAULT 0,
    published_at     TEXT NOT NULL,
    published_by     TEXT NOT NULL,
    yanked_at        TEXT,
    yank_reason      TEXT,
    UNIQUE (product_line, channel, version)
);

CREATE TABLE release_images (
    release_id INTEGER NOT NULL REFERENCES releases (id),
    name       TEXT NOT NULL,
    target     TEXT NOT NULL,
    sha256     TEXT NOT NULL REFERENCES images (sha256),
    length     INTEGER NOT NULL,
    PRIMARY KEY (release_id, name)
);

CREATE TABLE devices (
    serial           TEXT PRIMARY KEY,
    model_id         TEXT NOT NULL REFERENCES models (id),
    hw_id            TEXT NOT NULL,
    channel          TEXT NOT NULL DEFAULT 'stable',
    current_version  TEXT,
    security_counter INTEGER,
    root_version     INTEGER,
    registered_at    TEXT,                     -- owner registration (extends warranty)
    created_at       TEXT NOT NULL,
    first_seen       TEXT,
    last_seen        TEXT
);
CREATE INDEX devices_model ON devices (model_id);

CREATE TABLE licences (
    id     TEXT PRIMARY KEY,
    serial TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    starts TEXT NOT NULL,
    ends   TEXT                               -- NULL: perpetual
);
CREATE INDEX licences_serial ON licences (serial);

CREATE TABLE contracts (
    id         TEXT PRIMARY KEY,
    serial     TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('service_contract', 'warranty_extension')),
    starts     TEXT NOT NULL,
    ends       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX contracts_serial ON contracts (serial);

CREATE TABLE reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL,
    release_id  INTEGER REFERENCES releases (id),
    version     TEXT NOT NULL,
    stage       TEXT NOT NULL CHECK (stage IN ('downloading', 'verifying', 'installing', 'installed', 'failed', 'rolled_back')),
    reason_code TEXT,
    detail      TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX reports_release ON reports (release_id, stage);
CREATE INDEX reports_serial ON reports (serial);

CREATE TABLE trust_roots (
    version  INTEGER PRIMARY KEY,
    envelope BLOB NOT NULL,
    added_at TEXT NOT NULL
);
