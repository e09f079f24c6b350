-- A refused payload received again (its gateway resends what is never confirmed, every
-- confirm_timeout_s) stays one row, which counts its arrivals and keeps the latest: an
-- ongoing problem reads as ongoing (docs/ingest.md, "Dead letters").
ALTER TABLE dead_letter
    ADD COLUMN times integer NOT NULL DEFAULT 1 CHECK (times >= 1),
    ADD COLUMN last_received_at timestamptz;
COMMENT ON COLUMN dead_letter.times IS 'Arrivals of this reason, topic and payload';
COMMENT ON COLUMN dead_letter.last_received_at IS 'The latest arrival after the first; NULL: none';
