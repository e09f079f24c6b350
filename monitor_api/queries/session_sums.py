"""Usage sessions summed per instrument over pieces of time: a period, the parts of one
outside its whole months, or calendar months (docs/metrics.md).

Each session's clipped interval is computed once (``OFFSET 0`` keeps PostgreSQL from inlining
the expressions into every aggregate that uses them), and the sums are taken per instrument
and user, which also yields the distinct outside users. Booked time and no-shows need
interval unions; only the few sessions that touch a booking window take part in them, which
cannot change either figure. ``metrics`` sums a period's pieces, ``session_month`` fills the
monthly rollup with the same pipeline cut into months.
"""

from __future__ import annotations

from datetime import timedelta

PAD = timedelta(days=1)
"""Warm-up and cool-down margins and the no-show grace are at most a day."""

OPERATED = "(u.user_id IS NOT NULL OR b.kind IS NOT DISTINCT FROM 'self')"
"""Whether session ``u``'s user ran the instrument themselves, which certification is about:
a reported user, or the user of ``b``, its booking, when self-operated (docs/metrics.md)."""
CERTIFIED_UNTIL = ("least(coalesce(cert.valid_until, 'infinity'),"
                   " coalesce(cert.revoked_at, 'infinity'))")
"""When certification ``cert`` stops being valid: at its end, or at its revocation if that
comes first."""

_SUMS_FROM_SESSIONS = """
), pieces AS MATERIALIZED (
{pieces}
), clipped AS (
    -- noise filter, then margins, then clipping to the piece; an open session ends at its
    -- last running sample. Sessions up to a day beyond the period feed the no-show check.
    -- [a, b) is the effective time (margins added), [ra, rb) the running time alone. A
    -- margin stops at a neighbouring session, and between two sessions the first one's
    -- cool-down comes before the next one's warm-up: no time is counted twice.
    SELECT s.instrument_id, p.month, s.user_id, s.operated, s.start_ts, s.end_ts, p.booked_mr,
           p.wide_mr,
           greatest(m.a, p.lo) AS a, least(m.b, p.hi) AS b,
           greatest(s.start_ts, p.lo) AS ra, least(s.end_ts, p.hi) AS rb,
           m.a < p.lo AS carried
    FROM (
        SELECT u.*, lag(u.end_ts) OVER w AS prev_end, lead(u.start_ts) OVER w AS next_start
        FROM (
            -- the reported user, else the user of the booking the session started in
            -- (docs/metrics.md, "Users by booking"); operated: whether that user ran the
            -- instrument themselves, which certification is about
            SELECT u.instrument_id, coalesce(u.user_id, b.user_id) AS user_id,
                   {operated} AS operated,
                   u.start_ts, coalesce(u.end_ts, u.last_ts) AS end_ts
            FROM usage_session u JOIN instrument i ON i.id = u.instrument_id
            LEFT JOIN LATERAL (
                -- looked up for unreported sessions only (OFFSET 0 keeps the test a filter
                -- before the lookup instead of a join filter after it)
                SELECT * FROM session_booking_opaque(u.instrument_id, u.start_ts, %(grace)s)
                WHERE u.user_id IS NULL OFFSET 0
            ) b ON true
            WHERE u.instrument_id = ANY(%(ids)s) AND ({overlapping})
              AND coalesce(u.end_ts, u.last_ts) - u.start_ts
                  >= make_interval(secs => i.min_session_s)
        ) u
        WINDOW w AS (PARTITION BY u.instrument_id ORDER BY u.start_ts)
    ) s JOIN pieces p
        ON p.id = s.instrument_id AND s.start_ts < p.hi_pad AND s.end_ts > p.lo_pad
    CROSS JOIN LATERAL (
        SELECT least(greatest(s.start_ts - p.warm, s.prev_end + p.cool), s.start_ts) AS a,
               greatest(least(s.end_ts + p.cool, s.next_start), s.end_ts) AS b
    ) m
    OFFSET 0
), sess AS (
    SELECT c.instrument_id, c.month, c.user_id, c.carried,
           greatest(date_part('epoch', c.b - c.a), 0) AS secs,
           greatest(date_part('epoch', c.rb - c.ra), 0) AS run_secs,
           c.operated AND (v.valid IS NULL OR NOT v.valid @> c.start_ts)
               AS uncertified,
           -- the running intervals touching a booking window, which booked running time and
           -- no-shows are made of (nested CASEs: cheap tests first, ranges built only when
           -- they matter); margins are not running time, so unbooked use leaves them out
           CASE WHEN c.booked_mr IS NOT NULL THEN CASE WHEN c.rb > c.ra THEN
               CASE WHEN tstzrange(c.ra, c.rb) && c.booked_mr
                    THEN tstzmultirange(tstzrange(c.ra, c.rb)) END END
           END AS used_hit,
           CASE WHEN c.wide_mr IS NOT NULL THEN
               CASE WHEN tstzrange(c.start_ts, c.end_ts) && c.wide_mr
                    THEN tstzmultirange(tstzrange(c.start_ts, c.end_ts)) END
           END AS raw_hit
    FROM clipped c LEFT JOIN (
        -- when each user held a valid certification for each instrument (one revoked
        -- before it began never was)
        SELECT cert.user_id, cert.instrument_id,
               range_agg(tstzrange(cert.valid_from,
                                   greatest(cert.valid_from, {certified_until}))) AS valid
        FROM certification cert
        WHERE cert.instrument_id = ANY(%(ids)s) AND cert.valid_from < %(hi_pad)s
        GROUP BY cert.user_id, cert.instrument_id
    ) v ON v.user_id = c.user_id AND v.instrument_id = c.instrument_id
    OFFSET 0
), per_user AS (
    SELECT instrument_id, month, user_id,
           count(*) FILTER (WHERE secs > 0) AS sessions,
           count(*) FILTER (WHERE secs > 0 AND carried) AS carried, sum(secs) AS used_s,
           sum(run_secs) AS run_s,
           count(*) FILTER (WHERE secs > 0 AND uncertified) AS uncertified_sessions,
           count(*) FILTER (WHERE secs > 0 AND uncertified AND carried) AS uncertified_carried,
           coalesce(sum(secs) FILTER (WHERE uncertified), 0) AS uncertified_s,
           multirange_union_agg(used_hit) AS used_mr, multirange_union_agg(raw_hit) AS raw_mr
    FROM sess
    GROUP BY instrument_id, month, user_id
), piece_sums AS (
    -- institution roots as parameters, not CTEs: the planner then knows the tables' sizes
    -- and hashes the small sides
    SELECT p.instrument_id, p.month,
           sum(p.sessions)::bigint AS sessions, sum(p.carried)::bigint AS carried,
           sum(p.used_s) AS effective_s,
           sum(p.run_s) AS running_s,
           coalesce(sum(p.used_s) FILTER (WHERE o.outside), 0) AS external_s,
           sum(p.uncertified_sessions)::bigint AS uncertified_sessions,
           sum(p.uncertified_carried)::bigint AS uncertified_carried,
           sum(p.uncertified_s) AS uncertified_s,
           coalesce(sum(p.used_s) FILTER (WHERE p.user_id IS NULL), 0) AS unattributed_s,
           array_agg(p.user_id) FILTER (WHERE o.outside AND p.sessions > 0) AS outside_users,
           array_agg(o.org) FILTER (WHERE o.outside AND p.sessions > 0) AS outside_orgs,
           multirange_union_agg(p.used_mr) AS used_mr, multirange_union_agg(p.raw_mr) AS raw_mr
    FROM per_user p
    JOIN instrument i ON i.id = p.instrument_id
    JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ir(id, root)
        ON ir.id = i.institution_id
    LEFT JOIN platform_user u ON u.id = p.user_id
    LEFT JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ur(id, root)
        ON ur.id = u.institution_id
    CROSS JOIN LATERAL (
        SELECT coalesce(u.approved AND ur.root IS DISTINCT FROM ir.root, false) AS outside,
               coalesce(ur.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    ) o
    GROUP BY p.instrument_id, p.month
"""

_OVERLAPPING = """
          start_ts < {hi} AND coalesce(end_ts, last_ts) > {lo}
          AND (end_ts > {lo} OR end_ts IS NULL)  -- implied; usage_session_end_idx
"""


def sums(pieces: str, *, ranges: list[tuple[str, str]]) -> str:
    """``_SUMS_FROM_SESSIONS`` over ``pieces``, reading the sessions that overlap any of
    ``ranges`` (SQL for their bounds: the pieces' with their pads)."""
    overlapping = " OR ".join(_OVERLAPPING.format(lo=lo, hi=hi) for lo, hi in ranges)
    return (_SUMS_FROM_SESSIONS.replace("{pieces}", pieces)
            .replace("{operated}", OPERATED).replace("{certified_until}", CERTIFIED_UNTIL)
            .replace("{overlapping}", overlapping or "false"))


PADDED = [("%(lo_pad)s", "%(hi_pad)s")]
"""The one range of a period or of the months being rolled up."""


def consecutive(ids: list[str], n: int) -> list[list[str]]:
    """``ids`` cut into ``n`` runs of consecutive ids, as even as can be."""
    size = max(-(-len(ids) // n), 1)
    return [ids[k:k + size] for k in range(0, len(ids), size)] or [[]]
