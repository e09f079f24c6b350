-- Certifications, bookings and service records. Two approved (or completed) bookings of one
-- instrument never overlap: the exclusion constraint enforces it even under concurrent writers.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE certification (
    id             bigserial PRIMARY KEY,
    user_id        text NOT NULL REFERENCES platform_user (id),
    instrument_id  text NOT NULL REFERENCES instrument (id),
    level          text NOT NULL CHECK (level IN ('self', 'assisted')),
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz,
    issued_by      text NOT NULL DEFAULT '',
    issued_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX certification_user_instrument_idx ON certification (user_id, instrument_id);

CREATE TABLE booking (
    id             bigserial PRIMARY KEY,
    instrument_id  text NOT NULL REFERENCES instrument (id),
    user_id        text NOT NULL REFERENCES platform_user (id),
    kind           text NOT NULL CHECK (kind IN ('self', 'assisted', 'sample')),
    start_ts       timestamptz NOT NULL,
    end_ts         timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'requested'
                   CHECK (status IN ('requested', 'approved', 'rejected', 'cancelled', 'completed')),
    purpose        text NOT NULL DEFAULT '',
    note           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    decided_by     text,
    CHECK (end_ts > start_ts),
    CONSTRAINT booking_no_overlap EXCLUDE USING gist (
        instrument_id WITH =, tstzrange(start_ts, end_ts) WITH &&
    ) WHERE (status IN ('approved', 'completed'))
);
CREATE INDEX booking_instrument_start_idx ON booking (instrument_id, start_ts);
CREATE INDEX booking_user_idx ON booking (user_id, start_ts);

CREATE TABLE service_record (
    booking_id       bigint PRIMARY KEY REFERENCES booking (id),
    contract_no      text NOT NULL DEFAULT '',
    fee_rmb          numeric(14, 2) NOT NULL DEFAULT 0 CHECK (fee_rmb >= 0),
    voucher_rmb      numeric(14, 2) NOT NULL DEFAULT 0 CHECK (voucher_rmb >= 0),
    rating           smallint CHECK (rating BETWEEN 1 AND 5),
    comment          text NOT NULL DEFAULT '',
    rated_at         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (voucher_rmb <= fee_rmb)
);
