-- Sessions that end after a moment: end_ts > t, or still open (end_ts IS NULL, a bitmap OR on
-- the same index). Reports and dashboards add this to their filter on coalesce(end_ts, last_ts)
-- (which it follows from), so a recent period reads its own sessions instead of the whole
-- table. Indexing end_ts rather than the expression keeps writes cheap: the ingest moves
-- last_ts of an open session with every batch, while end_ts changes once, when the session
-- ends, and already belongs to usage_session_period_idx.
CREATE INDEX IF NOT EXISTS usage_session_end_idx ON usage_session (end_ts);
