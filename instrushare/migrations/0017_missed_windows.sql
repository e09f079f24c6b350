-- The no-show rule for one booking at a time, so the suspension after repeated no-shows and
-- the Grafana panel ask the same question (docs/metrics.md, "Bookings"); the reports apply
-- the same rule to many bookings at once in their own query.

-- The platform has heard from the instrument at or after a moment, so it knows what the
-- instrument did before it: gateways deliver in order.
CREATE FUNCTION heard_since(p_instrument text, p_ts timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM state_sample s
                   WHERE s.instrument_id = p_instrument AND s.ts >= p_ts)
$$;

-- A booked window nobody used: over with its grace, heard from since, and no running time
-- in it widened by the grace on both sides.
CREATE FUNCTION window_missed(
    p_instrument text, p_start timestamptz, p_end timestamptz, p_grace interval
) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT p_end + p_grace <= now()
       AND heard_since(p_instrument, p_end + p_grace)
       AND running_seconds(p_instrument, p_start - p_grace, p_end + p_grace) = 0
$$;
