-- Availability rolled up per instrument and Asia/Shanghai calendar day, and per whole month
-- (docs/metrics.md).
-- A row is written by the report once a day is final: the instrument has a sample at or
-- after the day's end, so appends in time order can no longer change the day's state
-- intervals. The ingest deletes the rows a late sample can change. The heartbeat timeout is
-- part of the key: figures computed with one timeout are never reused for another.

CREATE TABLE state_day (
    instrument_id  text             NOT NULL,
    day            date             NOT NULL,
    timeout        interval         NOT NULL,
    up_s           double precision NOT NULL,  -- off, idle, running or maintenance
    fault_s        double precision NOT NULL,
    offline_s      double precision NOT NULL,  -- offline, or before the first sample
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, day, timeout)
);

-- The same figures per whole calendar month (month = its first day, Asia/Shanghai): a row is
-- written by the report only once every day of the month is final, as the sums of its days,
-- and deleted by the ingest together with the days a late sample can change.
CREATE TABLE state_month (
    instrument_id  text             NOT NULL,
    month          date             NOT NULL,
    timeout        interval         NOT NULL,
    up_s           double precision NOT NULL,
    fault_s        double precision NOT NULL,
    offline_s      double precision NOT NULL,
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, month, timeout)
);

-- Seconds up and in fault of one instrument inside [p_lo, p_hi), from state_segments.
CREATE FUNCTION state_time(
    p_instrument text, p_lo timestamptz, p_hi timestamptz, p_timeout interval
) RETURNS TABLE (up_s double precision, fault_s double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(extract(epoch FROM seg.seg_end - seg.seg_start))
                        FILTER (WHERE seg.state NOT IN ('offline', 'fault')), 0)::float8,
           coalesce(sum(extract(epoch FROM seg.seg_end - seg.seg_start))
                        FILTER (WHERE seg.state = 'fault'), 0)::float8
    FROM state_segments(p_instrument, p_lo, p_hi, p_timeout) seg
$$;
