-- Usage figures rolled up per instrument and whole calendar month (Asia/Shanghai; month = its
-- first day), so that a report over whole, past months reads twelve rows per instrument and
-- year instead of every session (docs/metrics.md, "Monthly rollup").
--
-- A row holds what the report computes for that month alone. Sums add up over adjacent months;
-- a session whose effective interval crosses the month's start is counted in both months and
-- is therefore counted again in `carried`, which a report over several months subtracts for
-- every month but its first. The running and raw intervals are kept as multiranges, so that
-- booked time and no-shows are computed with the bookings as they are when the report runs.
--
-- A row is written by the report once the month is final for the instrument: a state sample
-- exists at or after the month's end plus a day (margins are at most a day), and no session
-- starting before then is still open; appends in time order can then no longer change a
-- session that touches the month. Whatever else can change a row deletes it: the ingest when
-- it rewrites sessions that start before the end of the month plus a day, and the triggers
-- below when an instrument's margins or owner, a certification, a user or the institution tree
-- change.

CREATE TABLE session_month (
    instrument_id         text             NOT NULL,
    month                 date             NOT NULL,
    sessions              bigint           NOT NULL,  -- with effective time in the month
    carried               bigint           NOT NULL,  -- of which begun before the month
    effective_s           double precision NOT NULL,
    running_s             double precision NOT NULL,
    external_s            double precision NOT NULL,
    uncertified_sessions  bigint           NOT NULL,
    uncertified_carried   bigint           NOT NULL,
    uncertified_s         double precision NOT NULL,
    unattributed_s        double precision NOT NULL,
    outside_users         text[]           NOT NULL,
    outside_orgs          text[]           NOT NULL,
    running_mr            tstzmultirange   NOT NULL,  -- running time, clipped to the month
    raw_mr                tstzmultirange   NOT NULL,  -- sessions touching the month +- a day
    computed_at           timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, month)
);

-- Outside users and organisations of several months, which the report makes distinct.
CREATE AGGREGATE array_cat_agg(anycompatiblearray) (
    SFUNC = array_cat,
    STYPE = anycompatiblearray,
    INITCOND = '{}'
);

CREATE FUNCTION session_month_forget_instrument() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM session_month WHERE instrument_id IN (OLD.instrument_id, NEW.instrument_id);
    RETURN NULL;
END $$;

-- Certifications decide which sessions count as uncertified.
CREATE TRIGGER session_month_certification
AFTER INSERT OR UPDATE OR DELETE ON certification
FOR EACH ROW EXECUTE FUNCTION session_month_forget_instrument();

CREATE FUNCTION session_month_forget_own_instrument() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM session_month WHERE instrument_id = OLD.id;
    RETURN NULL;
END $$;

-- Margins and the noise filter shape every session; the owner decides who is outside.
CREATE TRIGGER session_month_instrument
AFTER UPDATE OF warmup_s, cooldown_s, min_session_s, institution_id OR DELETE ON instrument
FOR EACH ROW EXECUTE FUNCTION session_month_forget_own_instrument();

-- A user's organisation and approval decide whether their sessions are outside use (a user
-- registered after using an instrument changes the figures too). Per statement, with the rows
-- before and after: an import of many users reads the sessions once, and not at all while
-- nothing is rolled up.
CREATE FUNCTION session_month_forget_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM session_month) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        DELETE FROM session_month WHERE instrument_id IN (
            SELECT u.instrument_id FROM usage_session u JOIN new_rows n ON n.id = u.user_id);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM session_month WHERE instrument_id IN (
            SELECT u.instrument_id FROM usage_session u JOIN old_rows o ON o.id = u.user_id);
    ELSE
        DELETE FROM session_month WHERE instrument_id IN (
            SELECT u.instrument_id FROM usage_session u
            WHERE u.user_id IN (SELECT c.id FROM (
                (SELECT id, institution_id, organisation, approved FROM new_rows
                 EXCEPT SELECT id, institution_id, organisation, approved FROM old_rows)
                UNION ALL
                (SELECT id, institution_id, organisation, approved FROM old_rows
                 EXCEPT SELECT id, institution_id, organisation, approved FROM new_rows)) c));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER session_month_user_insert AFTER INSERT ON platform_user
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION session_month_forget_users();
CREATE TRIGGER session_month_user_update AFTER UPDATE ON platform_user
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION session_month_forget_users();
CREATE TRIGGER session_month_user_delete AFTER DELETE ON platform_user
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION session_month_forget_users();

CREATE FUNCTION session_month_forget_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM session_month;
    RETURN NULL;
END $$;

-- The institution tree decides which institution an instrument or user belongs to.
CREATE TRIGGER session_month_institution
AFTER UPDATE OF id, parent_id OR DELETE ON institution
FOR EACH STATEMENT EXECUTE FUNCTION session_month_forget_all();
