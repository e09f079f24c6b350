"""bench/latency.py end to end with tiny parameters: one JSON line whose figures add up."""

from __future__ import annotations

from tests.bench.helpers import run_bench

RATE, DURATION, WARMUP, PROBE_EVERY = 200, 3.0, 0.5, 0.1


def test_latency_bench_prints_one_consistent_json_line() -> None:
    result = run_bench("latency.py", "--instruments", 40, "--rate", RATE, "--duration", DURATION,
                       "--warmup", WARMUP, "--probe-interval", PROBE_EVERY, "--idle", 0.5,
                       timeout=120)

    load = result["load"]
    assert load["published"] == RATE * DURATION
    assert load["stored"] == load["published"]  # every message stored once, none dead-lettered
    assert abs(load["achieved_rate"] - RATE) / RATE < 0.05

    probes = round((DURATION - WARMUP) / PROBE_EVERY)
    latency, broker = result["latency"], result["broker_baseline"]
    assert abs(latency["count"] - probes) <= 1
    assert latency["lost"] == 0 and broker["lost"] == 0
    assert broker["count"] == latency["count"]
    assert result["ingest_receive"]["count"] == latency["count"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    # the broker alone and the ingest's receipt come well before visibility in the API
    assert broker["p50_ms"] < latency["p50_ms"]
    assert result["ingest_receive"]["p50_ms"] < latency["p50_ms"]
    assert latency["p50_ms"] < 10_000
    assert result["ratio_p99_vs_broker_p99"] == round(latency["p99_ms"] / broker["p99_ms"], 1)
    assert result["p99_vs_bar"] == round(latency["p99_ms"] / 1000, 3)

    batches = result["ingest_batches"]  # the worker's own metrics count every message
    assert batches["batches"] >= 1 and batches["mean_write_ms"] > 0
    assert abs(batches["batches"] * batches["mean_messages"] - RATE * DURATION) <= (
        batches["batches"] * 0.05 + 1)

    memory = result["memory"]
    assert 10 < memory["ingest_idle_rss_mb"] <= memory["ingest_max_rss_mb"] < 2000
    assert memory["samples"] >= DURATION / 0.5
    assert abs(memory["ratio_vs_bar"] - memory["ingest_max_rss_mb"] / 200) < 0.002
