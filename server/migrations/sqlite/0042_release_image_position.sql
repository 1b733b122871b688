-- The order of a release's images, as the manifest lists them (it was the
-- rowid, which PostgreSQL does not have).
ALTER TABLE release_images ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
UPDATE release_images SET position = rowid;
