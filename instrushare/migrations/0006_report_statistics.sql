-- Planner statistics for the end of a usage session (end_ts, or last_ts while it is open),
-- the expression reports filter on. Without them PostgreSQL underestimates how many sessions
-- a period holds and picks slow plans for yearly reports. No index: writes cost nothing more.
CREATE STATISTICS IF NOT EXISTS usage_session_end_expr
    ON (coalesce(end_ts, last_ts)) FROM usage_session;
