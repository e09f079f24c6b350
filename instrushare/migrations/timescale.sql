-- TimescaleDB only: applied by `instrushare db migrate` when the extension is installed and
-- preloaded. Everything else in the schema works without it. Idempotent.
SELECT create_hypertable('state_sample', by_range('ts', INTERVAL '7 days'),
                         migrate_data => true, if_not_exists => true);
SELECT create_hypertable('instrument_event', by_range('ts', INTERVAL '30 days'),
                         migrate_data => true, if_not_exists => true);
SELECT create_hypertable('ingested_message', by_range('created_at', INTERVAL '7 days'),
                         migrate_data => true, if_not_exists => true);

ALTER TABLE state_sample SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument_id', timescaledb.compress_orderby = 'ts');
ALTER TABLE ingested_message SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'gateway_id', timescaledb.compress_orderby = 'seq, created_at');

-- Defaults documented in docs/data-model.md: compress after 35 days, past the protocol's
-- 30-day replay window, so late data lands in uncompressed chunks; drop raw samples after
-- 400 days and the message log after 60 (usage sessions, which metrics use, are kept forever).
SELECT add_compression_policy('state_sample', INTERVAL '35 days', if_not_exists => true);
SELECT add_compression_policy('ingested_message', INTERVAL '35 days', if_not_exists => true);
SELECT add_retention_policy('state_sample', INTERVAL '400 days', if_not_exists => true);
SELECT add_retention_policy('ingested_message', INTERVAL '60 days', if_not_exists => true);
