-- Files attached to an RMA (photos, logs the customer sent). The bytes are
-- in storage under attachments/, keyed by their sha256; a row is written
-- only once storage has verified them, so a row always names a complete
-- object. An attachment goes with its RMA.
CREATE TABLE rma_attachments (
    id           TEXT PRIMARY KEY,             -- att_<32 hex>
    rma          TEXT NOT NULL REFERENCES rmas (number) ON DELETE CASCADE,
    name         TEXT NOT NULL,                -- the file name as given, no path
    content_type TEXT NOT NULL,
    length       INTEGER NOT NULL CHECK (length >= 0),
    sha256       TEXT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    uploaded_at  TEXT NOT NULL
);
CREATE INDEX rma_attachments_rma ON rma_attachments (rma, uploaded_at);
