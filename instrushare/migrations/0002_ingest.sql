-- Ingest fast path and dead-letter dedup.

-- The ingest COPYs messages straight into ingested_message; arrival numbers them on the way in.
ALTER TABLE ingested_message ALTER COLUMN arrival SET DEFAULT nextval('ingest_arrival_seq');

-- A dead letter committed just before a crash, and not yet acknowledged, comes back on
-- redelivery: store each (reason, topic, payload) once. Keep the first of existing copies.
DELETE FROM dead_letter d
USING dead_letter e
WHERE d.reason = e.reason AND d.topic = e.topic AND md5(d.payload) = md5(e.payload)
  AND d.id > e.id;
CREATE UNIQUE INDEX dead_letter_dedup_idx ON dead_letter (reason, topic, md5(payload));
