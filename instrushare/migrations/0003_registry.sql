-- Registry details used by monitor_api: instrument facts for compliance and evaluation,
-- per-instrument metric settings, and hashed API tokens. Every added column is nullable or
-- has a default, because the simulator and the ingest insert rows with 0001's columns only.

ALTER TABLE institution
    ADD COLUMN kind        text NOT NULL DEFAULT '',
    ADD COLUMN created_at  timestamptz NOT NULL DEFAULT now();

ALTER TABLE instrument
    ADD COLUMN model                text NOT NULL DEFAULT '',
    ADD COLUMN maker                text NOT NULL DEFAULT '',
    ADD COLUMN category_code        text CHECK (category_code ~ '^[0-9]{6}$'),
    ADD COLUMN value_rmb            numeric(14, 2) CHECK (value_rmb >= 0),
    ADD COLUMN accepted_on          date,
    ADD COLUMN networked_on         date,
    ADD COLUMN owner_unit           text NOT NULL DEFAULT '',
    ADD COLUMN location             text NOT NULL DEFAULT '',
    ADD COLUMN open_to_outside      boolean NOT NULL DEFAULT true,
    ADD COLUMN fee_schedule         text NOT NULL DEFAULT '',
    ADD COLUMN warmup_s             integer NOT NULL DEFAULT 0 CHECK (warmup_s BETWEEN 0 AND 86400),
    ADD COLUMN cooldown_s           integer NOT NULL DEFAULT 0 CHECK (cooldown_s BETWEEN 0 AND 86400),
    ADD COLUMN min_session_s        integer NOT NULL DEFAULT 0 CHECK (min_session_s BETWEEN 0 AND 86400),
    ADD COLUMN auto_approve         boolean NOT NULL DEFAULT false;
CREATE INDEX instrument_institution_idx ON instrument (institution_id);
CREATE INDEX instrument_category_idx ON instrument (category_code);

ALTER TABLE platform_user
    ADD COLUMN email       text NOT NULL DEFAULT '',
    ADD COLUMN created_at  timestamptz NOT NULL DEFAULT now();

-- Only the SHA-256 of a token is stored; the token itself is shown once, when it is made.
CREATE TABLE api_token (
    id              bigserial PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    role            text NOT NULL CHECK (role IN ('admin', 'lab_manager', 'evaluator', 'user')),
    institution_id  text REFERENCES institution (id),
    user_id         text REFERENCES platform_user (id),
    label           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CHECK (role <> 'lab_manager' OR institution_id IS NOT NULL),
    CHECK (role <> 'user' OR user_id IS NOT NULL)
);

CREATE INDEX instrument_status_updated_idx ON instrument_status (updated_at);
