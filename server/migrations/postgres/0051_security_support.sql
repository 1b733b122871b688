-- Security support under the EU Cyber Resilience Act (docs/CRA.md).
--
-- A support period per product line, overridable per model, in months
-- from the day each unit was placed on the market (its sale date, or its
-- provisioning day when the sale is not recorded). Under 60 months needs
-- a justification; NULL months: the 60-month default.
ALTER TABLE product_lines ADD COLUMN support_months INTEGER;
ALTER TABLE product_lines ADD COLUMN support_justification TEXT;
ALTER TABLE models ADD COLUMN support_months INTEGER;
ALTER TABLE models ADD COLUMN support_justification TEXT;

-- What a release is, from its signed manifest: 'security', 'feature' or
-- 'mixed' (every release published before this column is a feature
-- release: its manifest could not say otherwise). The advisory is the
-- signed one, as JSON, for security and mixed releases; its CVE ids are
-- rows below, so exposure can be asked per id.
ALTER TABLE releases ADD COLUMN kind TEXT NOT NULL DEFAULT 'feature'
    CHECK (kind IN ('security', 'feature', 'mixed'));
ALTER TABLE releases ADD COLUMN advisory TEXT;
ALTER TABLE releases ADD COLUMN mixed_reason TEXT;
CREATE TABLE release_cves (
    release_id BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    cve        TEXT NOT NULL,
    PRIMARY KEY (release_id, cve)
);
CREATE INDEX release_cves_cve ON release_cves (cve);

-- The SBOM the manifest signs (format, digest, length), and when its bytes
-- were stored; its components, for "which releases contain X at V".
ALTER TABLE releases ADD COLUMN sbom_format TEXT;
ALTER TABLE releases ADD COLUMN sbom_sha256 TEXT;
ALTER TABLE releases ADD COLUMN sbom_length BIGINT;
ALTER TABLE releases ADD COLUMN sbom_stored_at TIMESTAMPTZ;
CREATE TABLE sbom_components (
    release_id BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    PRIMARY KEY (release_id, name, version)
);
CREATE INDEX sbom_components_name ON sbom_components (name, version);

-- A device owner's choice about one security release that was not
-- installed automatically: 'opted_out', or 'postponed' until an instant.
-- The latest choice per device and release.
CREATE TABLE update_choices (
    serial          TEXT NOT NULL,
    release_id      BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    choice          TEXT NOT NULL CHECK (choice IN ('opted_out', 'postponed')),
    postponed_until TIMESTAMPTZ,
    at              TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (serial, release_id)
);
