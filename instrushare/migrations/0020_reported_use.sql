-- What units report of their instruments' use in a year (the figures that used to reach the
-- province in spreadsheets), kept to be compared with what the platform measured
-- (docs/metrics.md, "Reported against measured").
CREATE TABLE reported_use (
    year             integer       NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    instrument_id    text          NOT NULL REFERENCES instrument (id) ON DELETE CASCADE,
    effective_hours  numeric(6, 2) NOT NULL CHECK (effective_hours BETWEEN 0 AND 8784),
    external_hours   numeric(6, 2) NOT NULL DEFAULT 0
                     CHECK (external_hours >= 0 AND external_hours <= effective_hours),
    reported_by      text          NOT NULL,
    reported_at      timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (year, instrument_id)
);
