-- State intervals of one instrument inside [p_lo, p_hi): each sample holds its state until the
-- next sample; when that gap is longer than the heartbeat timeout the whole gap counts as
-- 'offline'. Used by the timeline and by availability, so both follow one definition.
-- The caller clips p_hi to now(); an interval with no later sample yet runs until now().

CREATE FUNCTION state_segments(
    p_instrument text, p_lo timestamptz, p_hi timestamptz, p_timeout interval
) RETURNS TABLE (seg_start timestamptz, seg_end timestamptz, state text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH s AS (
        SELECT ss.ts, ss.state, lead(ss.ts) OVER (ORDER BY ss.ts) AS nxt
        FROM state_sample ss
        WHERE ss.instrument_id = p_instrument
          AND ss.ts >= coalesce(
                (SELECT max(p.ts) FROM state_sample p
                 WHERE p.instrument_id = p_instrument AND p.ts <= p_lo), p_lo)
          AND ss.ts < p_hi
    ), t AS (
        SELECT s.ts, s.state,
               coalesce(s.nxt,
                        (SELECT min(n.ts) FROM state_sample n
                         WHERE n.instrument_id = p_instrument AND n.ts >= p_hi),
                        greatest(now(), p_hi)) AS nxt
        FROM s
    )
    SELECT greatest(t.ts, p_lo), least(t.nxt, p_hi),
           CASE WHEN t.nxt - t.ts > p_timeout THEN 'offline' ELSE t.state END
    FROM t
    WHERE least(t.nxt, p_hi) > greatest(t.ts, p_lo)
$$;

-- The top-level institution of a unit (a university for its analysis centre). Users of the
-- same top-level institution are inside users of all its units' instruments.
CREATE FUNCTION institution_root(p_id text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH RECURSIVE up(id, parent_id, depth) AS (
        SELECT id, parent_id, 0 FROM institution WHERE id = p_id
        UNION ALL
        SELECT i.id, i.parent_id, up.depth + 1 FROM institution i JOIN up ON i.id = up.parent_id
        WHERE up.depth < 32
    )
    SELECT id FROM up ORDER BY depth DESC LIMIT 1
$$;
