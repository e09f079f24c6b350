-- A user's pending requests for one instrument never overlap: a second tab or a retry must
-- not queue a duplicate for the managers, also when both arrive at once (the API checks
-- first for a clear message; this decides the race). Requests queued twice before this rule
-- existed: each one overlapping an earlier pending request of its user on its instrument is
-- cancelled, its note naming the earlier one.
UPDATE booking b
SET status = 'cancelled', decided_at = now(), decided_by = 'db migrate',
    note = 'duplicate of request ' || (
        SELECT min(e.id) FROM booking e
        WHERE e.status = 'requested' AND e.user_id = b.user_id
          AND e.instrument_id = b.instrument_id AND e.id < b.id
          AND tstzrange(e.start_ts, e.end_ts) && tstzrange(b.start_ts, b.end_ts))
WHERE b.status = 'requested' AND EXISTS (
    SELECT 1 FROM booking e
    WHERE e.status = 'requested' AND e.user_id = b.user_id
      AND e.instrument_id = b.instrument_id AND e.id < b.id
      AND tstzrange(e.start_ts, e.end_ts) && tstzrange(b.start_ts, b.end_ts));

ALTER TABLE booking ADD CONSTRAINT booking_request_once EXCLUDE USING gist (
    instrument_id WITH =, user_id WITH =, tstzrange(start_ts, end_ts) WITH &&
) WHERE (status = 'requested');
