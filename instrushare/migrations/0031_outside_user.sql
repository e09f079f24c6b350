-- The outside-user rule (docs/metrics.md, "Inside and outside users") as one expression, for
-- the queries that apply it row by row: the Grafana panels (dashboard_sessions) and the API's
-- session log. A user is outside an instrument of `owner` when approved and registered under
-- no institution or under another top-level one; an unknown user (all NULL) is not. The
-- reports apply the same rule to roots they look up once per run (session_sums.py).
-- PostgreSQL inlines it: a plain expression over its arguments.
CREATE FUNCTION outside_user(approved boolean, user_institution text, owner text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(approved, false)
           AND (user_institution IS NULL
                OR institution_root(user_institution) IS DISTINCT FROM institution_root(owner))
$$;

CREATE OR REPLACE FUNCTION dashboard_sessions(lo timestamptz, hi timestamptz,
                                              institutions text[], grace interval)
RETURNS TABLE (instrument_id text, institution_id text, start_ts timestamptz,
               end_ts timestamptz, external boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT u.instrument_id, i.institution_id,
           greatest(u.start_ts, lo), least(coalesce(u.end_ts, u.last_ts), hi),
           outside_user(pu.approved, pu.institution_id, i.institution_id)
    FROM usage_session u
    JOIN instrument i ON i.id = u.instrument_id
    LEFT JOIN platform_user pu ON pu.id = coalesce(
        u.user_id, (SELECT b.user_id FROM session_booking(u.instrument_id, u.start_ts, grace) b))
    WHERE u.start_ts < hi AND coalesce(u.end_ts, u.last_ts) > lo
      AND (u.end_ts > lo OR u.end_ts IS NULL)
      AND i.institution_id IN (SELECT institution_subtree(institutions))
$$;
