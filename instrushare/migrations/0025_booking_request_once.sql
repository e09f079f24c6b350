-- A user's pending requests for one instrument never overlap: a second tab or a retry must
-- not queue a duplicate for the managers, also when both arrive at once (the API checks
-- first for a clear message; this decides the race). Requests queued twice before this rule
-- existed: going through each user's requests for an instrument in the order they were made,
-- one overlapping a request kept so far is cancelled, its note naming that request.
DO $$
DECLARE
    r record;
    kept bigint;
BEGIN
    FOR r IN SELECT id, user_id, instrument_id, start_ts, end_ts FROM booking
             WHERE status = 'requested' ORDER BY id LOOP
        SELECT min(k.id) INTO kept FROM booking k
        WHERE k.status = 'requested' AND k.user_id = r.user_id
          AND k.instrument_id = r.instrument_id AND k.id < r.id
          AND tstzrange(k.start_ts, k.end_ts) && tstzrange(r.start_ts, r.end_ts);
        IF kept IS NOT NULL THEN
            UPDATE booking SET status = 'cancelled', decided_at = now(), decided_by = 'db migrate',
                note = 'duplicate of request ' || kept
            WHERE id = r.id;
        END IF;
    END LOOP;
END $$;

ALTER TABLE booking ADD CONSTRAINT booking_request_once EXCLUDE USING gist (
    instrument_id WITH =, user_id WITH =, tstzrange(start_ts, end_ts) WITH &&
) WHERE (status = 'requested');
