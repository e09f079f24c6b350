-- Fault onsets, for the national running-state classes (docs/metrics.md, "Faults and running
-- state"), and the registry's mark of an instrument awaiting disposal.
--
-- A fault begins at a 'fault' sample whose previous sample is in another state, or lies more
-- than the heartbeat timeout before it (offline in between). Each onset belongs to the day of
-- its sample, so days and months add up. The availability rollup stores the count beside the
-- seconds; rows stored before this migration lack it and are dropped (reports, and the API's
-- background filler, compute them again).

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

DELETE FROM state_month;
DELETE FROM state_day;
ALTER TABLE state_day ADD COLUMN faults integer NOT NULL;
ALTER TABLE state_month ADD COLUMN faults integer NOT NULL;

ALTER TABLE instrument ADD COLUMN awaiting_disposal boolean NOT NULL DEFAULT false;
