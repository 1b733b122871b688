-- The request an audited action was done in, to find its access-log line.
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
