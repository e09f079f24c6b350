-- A registry change that forgets rolled-up months (the triggers of 0010) must not race a
-- report rolling them up: the trigger would miss rows written but not yet committed, and a
-- rollup that read the registry before the change would commit figures it made stale. A
-- rollup holds advisory lock (7411, 0) shared from before it reads the registry until its
-- rows are committed (instrushare.db.SHARE_ROLLUPS); each statement that can fire those
-- triggers first takes it exclusively, so it waits for rollups in flight and the rollups
-- after it read the registry as it leaves it. The two-key lock never meets the per-instrument
-- locks, which use the one-key space.

CREATE FUNCTION session_month_wait_for_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7411, 0);
    RETURN NULL;
END $$;

CREATE TRIGGER session_month_certification_wait
BEFORE INSERT OR UPDATE OR DELETE ON certification
FOR EACH STATEMENT EXECUTE FUNCTION session_month_wait_for_rollups();

CREATE TRIGGER session_month_instrument_wait
BEFORE UPDATE OF warmup_s, cooldown_s, min_session_s, institution_id OR DELETE ON instrument
FOR EACH STATEMENT EXECUTE FUNCTION session_month_wait_for_rollups();

CREATE TRIGGER session_month_user_wait
BEFORE INSERT OR UPDATE OR DELETE ON platform_user
FOR EACH STATEMENT EXECUTE FUNCTION session_month_wait_for_rollups();

CREATE TRIGGER session_month_institution_wait
BEFORE UPDATE OF id, parent_id OR DELETE ON institution
FOR EACH STATEMENT EXECUTE FUNCTION session_month_wait_for_rollups();
