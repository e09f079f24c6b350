"""SQL of the batch transaction. Staging tables are per connection and emptied at COMMIT.

Array parameters are passed in binary (``%b``): psycopg dumps a list of timestamps in text
form about ten times slower, which showed as a sixth of the writer's time.

Two ways to store rows: COPY straight into the tables (the fast path: it fails on any
duplicate key, and the transaction is then replayed on the other way) and COPY into staging
tables followed by ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (the safe path).
"""

from __future__ import annotations

from instrushare import db

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_msg (
    gateway_id text, seq bigint, created_at timestamptz, instrument_id text, bd_seq bigint,
    historical boolean, n_samples integer, n_events integer, received_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_sample (
    instrument_id text, ts timestamptz, state text, power_w double precision, user_id text,
    metrics jsonb, gateway_id text, seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_event (
    instrument_id text, ts timestamptz, type text, user_id text, detail text,
    gateway_id text, seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_anchor (instrument_id text PRIMARY KEY, a timestamptz)
    ON COMMIT DELETE ROWS;
"""

MSG_COLUMNS = (
    "gateway_id, seq, created_at, instrument_id, bd_seq, historical, n_samples, n_events,"
    " received_at"
)
# Fast path: ``arrival`` takes its default (0002_ingest.sql) from ingest_arrival_seq.
# COPY in text format, from the buffers of ``_text``.
COPY_MSG = f"COPY ingested_message ({MSG_COLUMNS}) FROM STDIN"
COPY_SAMPLE = (
    "COPY state_sample (instrument_id, ts, state, power_w, user_id, metrics, gateway_id, seq)"
    " FROM STDIN"
)
COPY_EVENT = (
    "COPY instrument_event (instrument_id, ts, type, user_id, detail, gateway_id, seq)"
    " FROM STDIN"
)

# Safe path.
STAGE_MSG = "COPY ingest_msg FROM STDIN"
STAGE_SAMPLE = "COPY ingest_sample FROM STDIN"
STAGE_EVENT = "COPY ingest_event FROM STDIN"

# Sorted by key so concurrent workers take unique-index locks in one order (no deadlock).
INSERT_MESSAGES = f"""
INSERT INTO ingested_message ({MSG_COLUMNS}, arrival)
SELECT m.*, nextval('ingest_arrival_seq')
FROM (SELECT * FROM ingest_msg ORDER BY gateway_id, seq) m
ON CONFLICT DO NOTHING
RETURNING gateway_id, seq, created_at
"""

INSERT_SAMPLES = """
INSERT INTO state_sample (instrument_id, ts, state, power_w, user_id, metrics, gateway_id, seq)
SELECT * FROM ingest_sample ORDER BY instrument_id, ts
ON CONFLICT DO NOTHING
"""

INSERT_EVENTS = """
INSERT INTO instrument_event (instrument_id, ts, type, user_id, detail, gateway_id, seq)
SELECT * FROM ingest_event ORDER BY instrument_id, ts, type
ON CONFLICT DO NOTHING
"""

# Serialises the derivation of sessions and status for one instrument across transactions,
# taken in sorted order once the samples are copied: whoever runs second sees the other's
# committed samples, sessions and status.
LOCK_INSTRUMENTS = db.LOCK_INSTRUMENTS

# What each instrument held before the batch, whose samples (from ``t_first`` on) are already
# copied: latest earlier sample, latest session, status, and how many samples are stored from
# ``t_first`` on (the batch's own, plus any that another transaction committed there).
BEFORE = """
SELECT i.id, l.ts, l.state, l.user_id, u.start_ts, st.state, st.since, st.last_ts,
       (SELECT count(*) FROM state_sample c
        WHERE c.instrument_id = i.id AND c.ts >= i.t_first) AS stored_from_first
FROM unnest(%b::text[], %b::timestamptz[]) AS i (id, t_first)
LEFT JOIN LATERAL (SELECT s.ts, s.state, s.user_id FROM state_sample s
                   WHERE s.instrument_id = i.id AND s.ts < i.t_first
                   ORDER BY s.ts DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT u.start_ts FROM usage_session u
                   WHERE u.instrument_id = i.id ORDER BY u.start_ts DESC LIMIT 1) u ON true
LEFT JOIN instrument_status st ON st.instrument_id = i.id
"""

# The batch holds the earliest stored samples of these instruments (none stored before its
# first): the platform has heard from them since then, or since earlier (late data lowers it).
MONITORED_SINCE = """
UPDATE instrument i SET monitored_since = f.ts
FROM unnest(%b::text[], %b::timestamptz[]) AS f (id, ts)
WHERE i.id = f.id AND (i.monitored_since IS NULL OR i.monitored_since > f.ts)
"""

# Rows computed in Python (``_derive``); the guard keeps a newer stored status regardless.
UPSERT_STATUS = """
INSERT INTO instrument_status AS st
    (instrument_id, gateway_id, state, since, user_id, power_w, last_ts, updated_at)
SELECT r.*, now()
FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[],
            %b::float8[], %b::timestamptz[]) AS r
ON CONFLICT (instrument_id) DO UPDATE SET
    gateway_id = EXCLUDED.gateway_id, state = EXCLUDED.state, since = EXCLUDED.since,
    user_id = EXCLUDED.user_id, power_w = EXCLUDED.power_w, last_ts = EXCLUDED.last_ts,
    updated_at = EXCLUDED.updated_at
WHERE EXCLUDED.last_ts > st.last_ts
"""

# ``since`` as the start of the trailing run of the status's state in every stored sample up
# to the status (historical ones too), for statuses that continued a stored one across
# samples that were not live (``_derive.since_from_samples``).
STATUS_SINCE_FROM_SAMPLES = """
UPDATE instrument_status st SET since = r.since
FROM (
    SELECT st2.instrument_id, (
        SELECT min(s.ts) FROM state_sample s
        WHERE s.instrument_id = st2.instrument_id AND s.ts <= st2.last_ts
          AND s.ts > coalesce((SELECT max(x.ts) FROM state_sample x
                               WHERE x.instrument_id = st2.instrument_id
                                 AND x.ts <= st2.last_ts AND x.state <> st2.state),
                              '-infinity')) AS since
    FROM instrument_status st2 WHERE st2.instrument_id = ANY(%s)
) r
WHERE st.instrument_id = r.instrument_id AND r.since IS NOT NULL
"""

UPSERT_SESSIONS = """
INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)
SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[],
                     %b::text[])
ON CONFLICT (instrument_id, start_ts) DO UPDATE SET
    end_ts = EXCLUDED.end_ts, last_ts = EXCLUDED.last_ts, user_id = EXCLUDED.user_id
"""

# Late data: recompute from an anchor at or before every session the new samples can touch.
SESSION_ANCHORS = """
INSERT INTO ingest_anchor (instrument_id, a)
SELECT t.instrument_id,
       least(t.t_min, (SELECT min(u.start_ts) FROM usage_session u
                       WHERE u.instrument_id = t.instrument_id
                         AND (u.end_ts IS NULL OR u.end_ts >= t.t_min - %(gap)b)))
FROM unnest(%(ids)b::text[], %(t_min)b::timestamptz[]) AS t (instrument_id, t_min)
"""

DELETE_SESSIONS = """
DELETE FROM usage_session u USING ingest_anchor a
WHERE u.instrument_id = a.instrument_id AND u.start_ts >= a.a
"""

# Late samples can change the stored availability of the day (Asia/Shanghai) of the sample
# before the earliest late one, whose interval they cut, and of every day after it; and so of
# the month of that day and every month after it.
DELETE_STATE_DAYS = """
WITH t AS (
    SELECT t.instrument_id,
           (coalesce((SELECT max(p.ts) FROM state_sample p
                      WHERE p.instrument_id = t.instrument_id AND p.ts < t.t_min),
                     t.t_min) AT TIME ZONE 'Asia/Shanghai')::date AS day
    FROM unnest(%(ids)b::text[], %(t_min)b::timestamptz[]) AS t (instrument_id, t_min)
), days AS (
    DELETE FROM state_day d USING t
    WHERE d.instrument_id = t.instrument_id AND d.day >= t.day
)
DELETE FROM state_month m USING t
WHERE m.instrument_id = t.instrument_id
  AND m.month >= date_trunc('month', t.day::timestamp)::date
"""

# Rewritten sessions can change the usage rollup (session_month) of the month a day before
# their start, whose margins or no-show window they may reach, and of every month after it.
_FORGET_SESSION_MONTHS = """
DELETE FROM session_month m USING {source}
WHERE m.instrument_id = t.instrument_id
  AND m.month >= date_trunc('month',
                            (t.since - interval '1 day') AT TIME ZONE 'Asia/Shanghai')::date
"""
FORGET_MONTHS_OF_ANCHORS = _FORGET_SESSION_MONTHS.format(
    source="ingest_anchor AS t (instrument_id, since)")
FORGET_MONTHS_OF_SESSIONS = _FORGET_SESSION_MONTHS.format(
    source="unnest(%b::text[], %b::timestamptz[]) AS t (instrument_id, since)")

# Gaps and islands: a session starts at a running sample whose predecessor is not running, ran
# for another user, or lies more than the gap before it. It ends at the next sample after the
# run when that is within the gap, else at its last running sample; open while nothing follows.
INSERT_SESSIONS = """
WITH s AS (
    SELECT s.instrument_id, s.ts, s.state = 'running' AS run, s.user_id,
           lag(s.ts) OVER w AS prev_ts, lag(s.state) OVER w AS prev_state,
           lag(s.user_id) OVER w AS prev_user, lead(s.ts) OVER w AS next_ts
    FROM state_sample s JOIN ingest_anchor a
      ON s.instrument_id = a.instrument_id AND s.ts >= a.a
    WINDOW w AS (PARTITION BY s.instrument_id ORDER BY s.ts)
), g AS (
    SELECT s.*, sum(CASE WHEN run AND (prev_state IS DISTINCT FROM 'running'
                                       OR prev_user IS DISTINCT FROM user_id
                                       OR ts - prev_ts > %(gap)b) THEN 1 ELSE 0 END)
                OVER (PARTITION BY instrument_id ORDER BY ts) AS grp
    FROM s
)
INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)
SELECT instrument_id, min(ts),
       CASE WHEN bool_or(next_ts IS NULL) THEN NULL
            WHEN max(next_ts) - max(ts) <= %(gap)b THEN max(next_ts)
            ELSE max(ts) END,
       max(ts), min(user_id)
FROM g WHERE run
GROUP BY instrument_id, grp
"""

# Dead letters are stored once per (reason, topic, payload); one received again (in this
# batch or after) counts its arrivals and keeps the latest.
INSERT_DEAD = """
INSERT INTO dead_letter AS d (topic, payload, reason, detail, received_at, times,
                              last_received_at)
SELECT topic, payload, reason, min(detail), min(received_at), count(*),
       CASE WHEN count(*) > 1 THEN max(received_at) END
FROM unnest(%b::text[], %b::bytea[], %b::text[], %b::text[], %b::timestamptz[])
     AS u(topic, payload, reason, detail, received_at)
GROUP BY reason, topic, payload
ON CONFLICT (reason, topic, md5(payload)) DO UPDATE SET
    times = d.times + EXCLUDED.times,
    last_received_at = greatest(d.last_received_at, d.received_at,
                                EXCLUDED.last_received_at, EXCLUDED.received_at)
"""

# A replayed dead letter goes before the batch's own are inserted: one dead-lettered anew
# takes its place (same reason, topic and payload).
DELETE_REPLAYED_DEAD = "DELETE FROM dead_letter WHERE id = ANY(%s)"

LOAD_REGISTRY = "SELECT id, gateway_id FROM instrument"

# A birth applies unless a newer session is stored or this very session already ended. One
# exception: a gateway whose storage was replaced counts bd_seq from 0 again, so a birth with
# a lower bd_seq applies too when the gateway is offline and the birth is later than going
# offline by more than the clock skew tolerated (a stale birth never is, docs/protocol.md).
GATEWAY_BIRTH = """
INSERT INTO gateway AS g (id, bd_seq, online, changed_at, instruments, software, dropped)
VALUES (%(id)s, %(bd_seq)s, true, %(ts)s, %(instruments)s, %(software)s, %(dropped)s)
ON CONFLICT (id) DO UPDATE SET
    bd_seq = EXCLUDED.bd_seq, online = true, changed_at = EXCLUDED.changed_at,
    instruments = EXCLUDED.instruments, software = EXCLUDED.software,
    dropped = EXCLUDED.dropped
WHERE EXCLUDED.bd_seq > g.bd_seq OR (EXCLUDED.bd_seq = g.bd_seq AND g.online)
   OR (NOT g.online AND EXCLUDED.changed_at > g.changed_at + %(skew)s)
"""

# A will counts only for the session it belongs to: an older bd_seq is a stale will.
GATEWAY_DEATH = """
UPDATE gateway SET online = false, changed_at = %(ts)s
WHERE id = %(id)s AND bd_seq = %(bd_seq)s AND online
"""
