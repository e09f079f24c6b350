-- Power per instrument and hour, for long power series. Here it is computed from the raw
-- samples; with TimescaleDB, timescale.sql replaces it by a read of the continuous aggregate
-- power_hour, which has the same columns. Callers use only this function, so one query serves
-- both. An hour with no power reading has no row.
CREATE FUNCTION power_hours(instrument text, lo timestamptz, hi timestamptz)
RETURNS TABLE (hour timestamptz, sum_w double precision, min_w double precision,
               max_w double precision, samples bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00Z'),
           sum(power_w), min(power_w), max(power_w), count(power_w)
    FROM state_sample
    WHERE instrument_id = instrument AND ts >= lo AND ts < hi AND power_w IS NOT NULL
    GROUP BY 1
$$;
