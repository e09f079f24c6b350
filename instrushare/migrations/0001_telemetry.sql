-- Registry core and telemetry. Runs unchanged on plain PostgreSQL 15+;
-- timescale.sql turns the time-series tables into hypertables when the extension is present.

CREATE TABLE institution (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    parent_id   text REFERENCES institution (id),
    tier        text NOT NULL DEFAULT 'service'
                CHECK (tier IN ('incubation', 'service', 'voucher')),
    region      text NOT NULL DEFAULT ''
);

CREATE TABLE instrument (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    institution_id  text NOT NULL REFERENCES institution (id),
    gateway_id      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instrument_gateway_idx ON instrument (gateway_id);

CREATE TABLE platform_user (
    id              text PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    institution_id  text REFERENCES institution (id),
    organisation    text NOT NULL DEFAULT '',
    approved        boolean NOT NULL DEFAULT false
);

-- Every accepted data message once; (gateway_id, seq) is the dedup key. created_at is part of
-- the key only because a hypertable's key must hold its time column; a resent message repeats it.
CREATE TABLE ingested_message (
    gateway_id     text        NOT NULL,
    seq            bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    instrument_id  text        NOT NULL,
    bd_seq         bigint      NOT NULL,
    historical     boolean     NOT NULL,
    n_samples      integer     NOT NULL,
    n_events       integer     NOT NULL,
    received_at    timestamptz NOT NULL,
    arrival        bigint      NOT NULL,
    PRIMARY KEY (gateway_id, seq, created_at)
);
CREATE SEQUENCE ingest_arrival_seq;

CREATE TABLE state_sample (
    instrument_id  text        NOT NULL,
    ts             timestamptz NOT NULL,
    state          text        NOT NULL,
    power_w        double precision,
    user_id        text,
    metrics        jsonb,
    gateway_id     text        NOT NULL,
    seq            bigint      NOT NULL,
    PRIMARY KEY (instrument_id, ts)
);

CREATE TABLE instrument_event (
    instrument_id  text        NOT NULL,
    ts             timestamptz NOT NULL,
    type           text        NOT NULL,
    user_id        text,
    detail         text,
    gateway_id     text        NOT NULL,
    seq            bigint      NOT NULL,
    PRIMARY KEY (instrument_id, ts, type)
);

-- Maximal runs of 'running' per instrument and user, derived from state_sample by the ingest.
-- end_ts is NULL while the session is still open; last_ts is its latest running sample.
CREATE TABLE usage_session (
    instrument_id  text        NOT NULL,
    start_ts       timestamptz NOT NULL,
    end_ts         timestamptz,
    last_ts        timestamptz NOT NULL,
    user_id        text,
    PRIMARY KEY (instrument_id, start_ts),
    CHECK (end_ts IS NULL OR end_ts >= start_ts)
);
CREATE INDEX usage_session_period_idx ON usage_session (start_ts, end_ts);

CREATE TABLE gateway (
    id             text PRIMARY KEY,
    bd_seq         bigint      NOT NULL,
    online         boolean     NOT NULL,
    changed_at     timestamptz NOT NULL,
    instruments    text[]      NOT NULL DEFAULT '{}',
    software       text
);

-- Latest live (non-historical) state per instrument. "offline" is derived when reading:
-- gateway offline, or last_ts older than the heartbeat timeout.
CREATE TABLE instrument_status (
    instrument_id  text PRIMARY KEY,
    gateway_id     text        NOT NULL,
    state          text        NOT NULL,
    since          timestamptz NOT NULL,
    user_id        text,
    power_w        double precision,
    last_ts        timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letter (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text        NOT NULL,
    payload      bytea       NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL DEFAULT ''
);
CREATE INDEX dead_letter_reason_idx ON dead_letter (reason, received_at);
