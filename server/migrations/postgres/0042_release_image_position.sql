-- The order of a release's images, as the manifest lists them.
ALTER TABLE release_images ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
