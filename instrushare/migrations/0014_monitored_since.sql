-- When the platform first heard from each instrument: the timestamp of its earliest sample,
-- kept by the ingest (lowered when older data arrives late) and never removed by retention.
-- The annual evaluation judges an instrument on the part of the year since then
-- (docs/metrics.md, "Annual evaluation").
--
-- For data stored before, the earliest trace of it: samples, and, where retention has pruned
-- samples, the usage sessions and events derived from them (kept forever) and the first day
-- the availability rollup found the instrument up or in fault.
ALTER TABLE instrument ADD COLUMN monitored_since timestamptz;
UPDATE instrument i
SET monitored_since = least(
    (SELECT min(s.ts) FROM state_sample s WHERE s.instrument_id = i.id),
    (SELECT min(u.start_ts) FROM usage_session u WHERE u.instrument_id = i.id),
    (SELECT min(e.ts) FROM instrument_event e WHERE e.instrument_id = i.id),
    (SELECT min(d.day)::timestamp AT TIME ZONE 'Asia/Shanghai' FROM state_day d
     WHERE d.instrument_id = i.id AND d.up_s + d.fault_s > 0));
