-- A year's evaluation as published: the results an admin reviewed, frozen (late telemetry,
-- retention or a changed assessment no longer move them), readable by every unit's lab
-- managers. Publishing again replaces it; withdrawing deletes it (docs/metrics.md,
-- "Publication"). The jsonb arrays hold the API's items: a migration that changes their
-- shape rewrites them too.
CREATE TABLE evaluation_publication (
    year          integer     PRIMARY KEY CHECK (year BETWEEN 2000 AND 2100),
    note          text        NOT NULL DEFAULT '',
    published_by  text        NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    rules         jsonb       NOT NULL,
    institutions  jsonb       NOT NULL,
    instruments   jsonb       NOT NULL
);
