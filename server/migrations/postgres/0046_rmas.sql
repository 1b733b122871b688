-- The repair desk (RMA): a unit sent in for repair, its customer contact,
-- its fault, its way through the service facility, the coverage decision
-- (after-sales policy, section 2), and what was done to it. Customer
-- contacts are personal data: an RMA goes with its device when the device
-- is erased.
CREATE TABLE rmas (
    number         TEXT PRIMARY KEY,           -- RMA-2026-000123
    year           BIGINT NOT NULL,
    seq            BIGINT NOT NULL,            -- per year, from 1
    serial         TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    model_id       TEXT NOT NULL,              -- the device's model when opened (lists filter on it)
    customer_name  TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_phone TEXT,
    fault          TEXT NOT NULL,              -- the customer's description
    fault_on       DATE NOT NULL,               -- when the fault occurred
    received_on    DATE,                        -- when the customer received the goods
    state          TEXT NOT NULL DEFAULT 'received'
                   CHECK (state IN ('received', 'diagnosing', 'repairing', 'testing',
                                    'shipped', 'closed', 'cancelled')),
    tracking_in    TEXT,                       -- carrier tracking number, customer to desk
    tracking_out   TEXT,                       -- desk back to customer
    coverage_code  TEXT,                       -- NULL until decided
    coverage       TEXT,                       -- JSON: the decision with its explanation
    opened_by      TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX rmas_serial ON rmas (serial, created_at);
CREATE INDEX rmas_state ON rmas (state, created_at);

-- Every change of an RMA, with who made it and when.
CREATE TABLE rma_events (
    id         TEXT PRIMARY KEY,
    rma        TEXT NOT NULL REFERENCES rmas (number) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,                  -- opened, state, tracking, coverage, push, part, replacement
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'      -- JSON
);
CREATE INDEX rma_events_rma ON rma_events (rma, at);

-- Parts replaced in a repair; each has a warranty of its own.
CREATE TABLE part_replacements (
    id             TEXT PRIMARY KEY,
    serial         TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,
    rma            TEXT REFERENCES rmas (number) ON DELETE SET NULL,
    part           TEXT NOT NULL,
    replaced_on    DATE NOT NULL,
    under_warranty BOOLEAN NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX part_replacements_serial ON part_replacements (serial);

-- Whole-unit replacements: the new unit names the one it replaces and the
-- start of its own warranty; the old unit names its replacement.
ALTER TABLE devices ADD COLUMN replaces TEXT;
ALTER TABLE devices ADD COLUMN replacement_start DATE;
ALTER TABLE devices ADD COLUMN replaced_by TEXT;
ALTER TABLE devices ADD COLUMN replaced_on DATE;
