-- When the platform first heard from each instrument: the timestamp of its earliest sample,
-- kept by the ingest (lowered when older data arrives late) and never removed by retention.
-- The annual evaluation judges an instrument on the part of the year since then
-- (docs/metrics.md, "Annual evaluation").
ALTER TABLE instrument ADD COLUMN monitored_since timestamptz;
UPDATE instrument i
SET monitored_since = (SELECT min(s.ts) FROM state_sample s WHERE s.instrument_id = i.id);
