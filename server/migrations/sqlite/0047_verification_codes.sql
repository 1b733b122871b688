-- The verification code printed on a unit (from factory data), which
-- proves possession when its owner registers it. Only a hash is stored,
-- as for tokens; the code itself is never returned.
ALTER TABLE devices ADD COLUMN verification_hash TEXT;
