-- TimescaleDB only: applied by `instrushare db migrate` when the extension is installed and
-- preloaded, after the numbered migrations, in one transaction, on every run. Everything else in
-- the schema works without it. Idempotent. Needs TimescaleDB 2.14 or later (by_range: 2.13;
-- setting the compression options again once chunks are compressed: 2.14) with the Timescale
-- License (compression and policies); see docs/deploy.md.
SELECT create_hypertable('state_sample', by_range('ts', INTERVAL '7 days'),
                         migrate_data => true, if_not_exists => true);
SELECT create_hypertable('instrument_event', by_range('ts', INTERVAL '30 days'),
                         migrate_data => true, if_not_exists => true);
SELECT create_hypertable('ingested_message', by_range('created_at', INTERVAL '7 days'),
                         migrate_data => true, if_not_exists => true);

-- Each primary key's columns are segmentby or orderby columns, as compression requires.
ALTER TABLE state_sample SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument_id', timescaledb.compress_orderby = 'ts');
ALTER TABLE ingested_message SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'gateway_id', timescaledb.compress_orderby = 'seq, created_at');

-- Defaults documented in docs/data-model.md: compress after 35 days, past the protocol's
-- 30-day replay window, so late data lands in uncompressed chunks (a dead letter replayed long
-- after it arrived may still reach a compressed one); drop raw samples after 400 days and the
-- message log after 60 (usage sessions, which metrics use, are kept forever).
SELECT add_compression_policy('state_sample', INTERVAL '35 days', if_not_exists => true);
SELECT add_compression_policy('ingested_message', INTERVAL '35 days', if_not_exists => true);
SELECT add_retention_policy('state_sample', INTERVAL '400 days', if_not_exists => true);
SELECT add_retention_policy('ingested_message', INTERVAL '60 days', if_not_exists => true);

-- Power per instrument and hour (docs/data-model.md). time_bucket's hours are date_bin's hours
-- from 2000-01-01 in migration 0027 (both on the UTC hour). Real-time aggregation (off by default
-- since 2.13) adds the hours after the last refresh. power_hours(), defined from raw samples by
-- migration 0027, then reads it.
CREATE MATERIALIZED VIEW IF NOT EXISTS power_hour
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument_id, time_bucket(INTERVAL '1 hour', ts) AS hour,
       sum(power_w) AS sum_w, min(power_w) AS min_w, max(power_w) AS max_w,
       count(power_w) AS samples
FROM state_sample
GROUP BY instrument_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
-- Refreshed every hour from 399 days to 1 hour ago (a refresh recomputes only what changed).
-- Hours before the last refresh are read from the materialisation alone, so the window reaches
-- back to the samples' retention: samples stored before the aggregate was created WITH NO DATA,
-- and dead letters replayed late, are materialised too. It stays a day inside the 400-day
-- retention (keep it so if either changes): a refresh over a dropped chunk would delete its
-- hours from the aggregate, which keeps them instead.
SELECT add_continuous_aggregate_policy('power_hour', start_offset => INTERVAL '399 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour',
    if_not_exists => true);
CREATE OR REPLACE FUNCTION power_hours(instrument text, lo timestamptz, hi timestamptz)
RETURNS TABLE (hour timestamptz, sum_w double precision, min_w double precision,
               max_w double precision, samples bigint)
LANGUAGE sql STABLE AS $$
    SELECT hour, sum_w, min_w, max_w, samples FROM power_hour
    WHERE instrument_id = instrument AND hour >= lo AND hour < hi AND samples > 0
$$;
