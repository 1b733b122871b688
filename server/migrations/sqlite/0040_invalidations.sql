-- Cache invalidations shared between replicas. A write that changes what a
-- replica may have cached (a device's facts, a token's validity) appends a
-- row; every replica polls the rows after the last seq it applied and drops
-- the matching cache entries. Rows older than a day are pruned: no cache
-- entry lives that long (the cache TTLs are capped at a day).
--
-- seq is AUTOINCREMENT so a pruned seq is never handed out again, and
-- SQLite's single writer makes seqs become visible in commit order, which
-- is what lets a replica remember only the last seq it applied.
CREATE TABLE cache_invalidations (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('device', 'token')),
    key  TEXT NOT NULL,                        -- device serial or token id
    at   TEXT NOT NULL
);
CREATE INDEX cache_invalidations_at ON cache_invalidations (at);

-- GET /v1/admin/tokens pages newest first by (created_at, id).
CREATE INDEX tokens_created_at ON tokens (created_at, id);
