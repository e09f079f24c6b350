-- A session whose gateway reported no user was run by the user of the booking it started in
-- (docs/metrics.md, "Users by booking"). session_booking() is the one place that says which
-- booking that is, for the reports and for dashboards.

-- The approved or completed booking of `instrument` whose window widened by `grace` on both
-- sides, [start - grace, end + grace), holds `at`; of several, the one whose window is
-- nearest to `at`, on a tie the later one. Such bookings never overlap (booking_no_overlap),
-- so only one starting at or before `at - grace` can still hold `at`: the latest; the others
-- start within the grace around `at`. Both are short scans of booking_instrument_start_idx.
-- PostgreSQL inlines it into a query that reads it in FROM: a quarter of the cost of a call
-- (the status board looks it up for every running instrument whose gateway names nobody).
CREATE FUNCTION session_booking(instrument text, at timestamptz, grace interval)
RETURNS TABLE (user_id text, kind text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT c.user_id, c.kind
    FROM (
        (SELECT b.user_id, b.kind, b.start_ts, b.end_ts FROM booking b
         WHERE b.instrument_id = instrument AND b.status IN ('approved', 'completed')
           AND b.start_ts <= at - grace
         ORDER BY b.start_ts DESC LIMIT 1)
        UNION ALL
        SELECT b.user_id, b.kind, b.start_ts, b.end_ts FROM booking b
        WHERE b.instrument_id = instrument AND b.status IN ('approved', 'completed')
          AND b.start_ts > at - grace AND b.start_ts <= at + grace
    ) c
    WHERE at < c.end_ts + grace
    ORDER BY greatest(c.start_ts - at, at - c.end_ts, interval '0'), c.start_ts DESC
    LIMIT 1
$$;

-- The same, never inlined (STRICT keeps PostgreSQL from it), for the reports' joins over a
-- year of sessions: inlined there, its plan's cost counts for every session in the estimates,
-- which then turn those joins into nested loops (twice as slow); called, it costs what COST
-- and ROWS say.
CREATE FUNCTION session_booking_opaque(instrument text, at timestamptz, grace interval)
RETURNS TABLE (user_id text, kind text)
LANGUAGE sql STABLE STRICT PARALLEL SAFE COST 1 ROWS 1 AS $$
    SELECT * FROM session_booking(instrument, at, grace)
$$;

-- The usage rollup is computed for one grace: a report with another one computes its own rows.
-- Rows computed before sessions took their booking's user are stale.
DELETE FROM session_month;
ALTER TABLE session_month
    ADD COLUMN grace interval NOT NULL,
    DROP CONSTRAINT session_month_pkey,
    ADD PRIMARY KEY (instrument_id, month, grace);

-- A booking that can attribute (approved or completed) appearing, going or changing its
-- window, user, kind or instrument changes the figures of the sessions without a reported
-- user that start in its window widened by the largest grace (a day), from the month their
-- margins (at most a day) reach back to. Like the registry changes of 0022, it first waits
-- for the rollups in flight, so none commits figures that the change made stale.
CREATE FUNCTION session_month_forget_booking() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    b booking;
BEGIN
    PERFORM pg_advisory_xact_lock(7411, 0);
    FOREACH b IN ARRAY ARRAY[OLD, NEW] LOOP
        CONTINUE WHEN b.id IS NULL OR b.status NOT IN ('approved', 'completed');
        DELETE FROM session_month m
        WHERE m.instrument_id = b.instrument_id
          AND m.month >= date_trunc('month', (b.start_ts - interval '2 days')
                                             AT TIME ZONE 'Asia/Shanghai')::date
          AND EXISTS (SELECT 1 FROM usage_session u
                      WHERE u.instrument_id = b.instrument_id AND u.user_id IS NULL
                        AND u.start_ts >= b.start_ts - interval '1 day'
                        AND u.start_ts < b.end_ts + interval '1 day');
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER session_month_booking_insert AFTER INSERT ON booking
FOR EACH ROW WHEN (NEW.status IN ('approved', 'completed'))
EXECUTE FUNCTION session_month_forget_booking();
CREATE TRIGGER session_month_booking_update AFTER UPDATE ON booking
FOR EACH ROW WHEN (
    (OLD.status IN ('approved', 'completed') OR NEW.status IN ('approved', 'completed'))
    AND (OLD.status IN ('approved', 'completed'), OLD.instrument_id, OLD.user_id, OLD.kind,
         OLD.start_ts, OLD.end_ts)
        IS DISTINCT FROM (NEW.status IN ('approved', 'completed'), NEW.instrument_id,
                          NEW.user_id, NEW.kind, NEW.start_ts, NEW.end_ts))
EXECUTE FUNCTION session_month_forget_booking();
CREATE TRIGGER session_month_booking_delete AFTER DELETE ON booking
FOR EACH ROW WHEN (OLD.status IN ('approved', 'completed'))
EXECUTE FUNCTION session_month_forget_booking();

-- A user's organisation and approval now also decide the figures of the sessions their
-- bookings attribute: the instruments they booked are forgotten too.
CREATE OR REPLACE FUNCTION session_month_forget_users() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM session_month) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(id) INTO changed FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(id) INTO changed FROM old_rows;
    ELSE
        SELECT array_agg(c.id) INTO changed FROM (
            (SELECT id, institution_id, organisation, approved FROM new_rows
             EXCEPT SELECT id, institution_id, organisation, approved FROM old_rows)
            UNION ALL
            (SELECT id, institution_id, organisation, approved FROM old_rows
             EXCEPT SELECT id, institution_id, organisation, approved FROM new_rows)) c;
    END IF;
    DELETE FROM session_month WHERE instrument_id IN (
        SELECT u.instrument_id FROM usage_session u WHERE u.user_id = ANY(changed)
        UNION
        SELECT b.instrument_id FROM booking b
        WHERE b.user_id = ANY(changed) AND b.status IN ('approved', 'completed'));
    RETURN NULL;
END $$;
