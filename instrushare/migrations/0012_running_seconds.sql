-- Running time of one instrument inside [p_lo, p_hi), in seconds: its usage sessions clipped
-- to the interval, noise (sessions shorter than the instrument's min_session_s) left out, an
-- open session running until its last sample. A booking's service hours are the running
-- seconds of its window, and it is a no-show when its window widened by the grace holds none
-- (docs/metrics.md). An instrument's sessions never overlap, so only the last one starting
-- at or before p_lo can reach into the interval: the scan is one short index range however
-- long the instrument's history.
CREATE FUNCTION running_seconds(p_instrument text, p_lo timestamptz, p_hi timestamptz)
RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(date_part('epoch', least(coalesce(s.end_ts, s.last_ts), p_hi)
                                           - greatest(s.start_ts, p_lo))), 0)
    FROM usage_session s JOIN instrument i ON i.id = s.instrument_id
    WHERE s.instrument_id = p_instrument
      AND s.start_ts >= coalesce(
            (SELECT max(p.start_ts) FROM usage_session p
             WHERE p.instrument_id = p_instrument AND p.start_ts <= p_lo), p_lo)
      AND s.start_ts < p_hi
      AND coalesce(s.end_ts, s.last_ts) > p_lo
      AND coalesce(s.end_ts, s.last_ts) - s.start_ts >= make_interval(secs => i.min_session_s)
$$;
