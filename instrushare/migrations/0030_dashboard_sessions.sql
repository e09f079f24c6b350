-- Usage sessions as the Grafana utilisation panels count them (docs/deploy.md): raw session
-- time clipped to [lo, hi), of the instruments of `institutions` and their sub-units, with
-- whether the session's user, reported or its booking's (session_booking(), migration 0028),
-- is an outside one (docs/metrics.md, "Inside and outside users"). The API's reports add warm-up and
-- cool-down margins and drop sessions below the minimum on top of this. A plain SQL function
-- of one SELECT: PostgreSQL inlines it into each panel's query.
CREATE FUNCTION dashboard_sessions(lo timestamptz, hi timestamptz, institutions text[],
                                   grace interval)
RETURNS TABLE (instrument_id text, institution_id text, start_ts timestamptz,
               end_ts timestamptz, external boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT u.instrument_id, i.institution_id,
           greatest(u.start_ts, lo), least(coalesce(u.end_ts, u.last_ts), hi),
           coalesce(pu.approved, false)  -- outside users are registered and approved
           AND (pu.institution_id IS NULL
                OR institution_root(pu.institution_id)
                   IS DISTINCT FROM institution_root(i.institution_id))
    FROM usage_session u
    JOIN instrument i ON i.id = u.instrument_id
    LEFT JOIN platform_user pu ON pu.id = coalesce(
        u.user_id, (SELECT b.user_id FROM session_booking(u.instrument_id, u.start_ts, grace) b))
    WHERE u.start_ts < hi AND coalesce(u.end_ts, u.last_ts) > lo
      AND (u.end_ts > lo OR u.end_ts IS NULL)
      AND i.institution_id IN (SELECT institution_subtree(institutions))
$$;
