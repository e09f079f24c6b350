-- Fault onsets, for the national running-state classes (docs/metrics.md, "Faults and running
-- state"), and the registry's mark of an instrument awaiting disposal.
--
-- A fault begins at a 'fault' sample whose previous sample is in another state, or lies more
-- than the heartbeat timeout before it (offline in between). Each onset belongs to the day of
-- its sample, so days and months add up. The availability rollup stores the count beside the
-- seconds.

CREATE FUNCTION fault_onsets(
    p_instrument text, p_lo timestamptz, p_hi timestamptz, p_timeout interval
) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT count(*)::integer
    FROM (
        SELECT ss.ts, ss.state, lag(ss.state) OVER w AS prev_state, lag(ss.ts) OVER w AS prev_ts
        FROM state_sample ss
        WHERE ss.instrument_id = p_instrument
          AND ss.ts >= coalesce(
                (SELECT max(p.ts) FROM state_sample p
                 WHERE p.instrument_id = p_instrument AND p.ts < p_lo), p_lo)
          AND ss.ts < p_hi
        WINDOW w AS (ORDER BY ss.ts)
    ) s
    WHERE s.ts >= p_lo AND s.state = 'fault'
      AND (s.prev_state IS DISTINCT FROM 'fault' OR s.ts - s.prev_ts > p_timeout)
$$;

-- Rows stored before this migration lack the count. Where the instrument's samples still
-- cover the whole day or month (its earliest sample is at or before the start), the row is
-- dropped: the next report, or the API's background filler, computes it again with the count.
-- Older rows are the only record left of days whose samples retention has pruned: they are
-- kept, their count unknown (NULL, which sums leave out).
ALTER TABLE state_day ADD COLUMN faults integer;
ALTER TABLE state_month ADD COLUMN faults integer;
CREATE TEMP TABLE first_sample ON COMMIT DROP AS
SELECT i.id, (SELECT min(s.ts) FROM state_sample s WHERE s.instrument_id = i.id) AS ts
FROM instrument i;
DELETE FROM state_day d USING first_sample f
WHERE d.instrument_id = f.id AND f.ts <= d.day::timestamp AT TIME ZONE 'Asia/Shanghai';
DELETE FROM state_month m USING first_sample f
WHERE m.instrument_id = f.id AND f.ts <= m.month::timestamp AT TIME ZONE 'Asia/Shanghai';

ALTER TABLE instrument ADD COLUMN awaiting_disposal boolean NOT NULL DEFAULT false;
