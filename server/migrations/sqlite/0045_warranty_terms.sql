-- The warranty terms of the after-sales policy: a product line's service
-- class (repair series, or accessories and batteries that are exchanged)
-- and its per-region standard periods; a device's date of sale, from which
-- its warranty runs, and its region.
ALTER TABLE product_lines ADD COLUMN service_class TEXT NOT NULL DEFAULT 'repair'
    CHECK (service_class IN ('repair', 'exchange'));
ALTER TABLE product_lines ADD COLUMN warranty_regions TEXT NOT NULL DEFAULT '{}'; -- JSON object: region -> months
ALTER TABLE devices ADD COLUMN sale_date TEXT;   -- YYYY-MM-DD; NULL: unknown (the provisioning day stands in)
ALTER TABLE devices ADD COLUMN region TEXT;
