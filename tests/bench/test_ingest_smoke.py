"""bench/ingest.py end to end with tiny parameters: one JSON line whose figures add up, and
nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.helpers import run_bench

MESSAGES, BATCHED, PER_MESSAGE = 2_000, 200, 10


def test_ingest_bench_prints_one_consistent_json_line(tmp_path: Path) -> None:
    result = run_bench("ingest.py", "--messages", MESSAGES, "--batched-messages", BATCHED,
                       "--samples-per-message", PER_MESSAGE, "--rounds", 1, timeout=300,
                       env={"TMPDIR": str(tmp_path)})

    for scenario, per_message in ((result["single_sample"], 1),
                                  (result["batched"], PER_MESSAGE)):
        rate = scenario["messages_per_s"]
        assert rate > 0
        assert scenario["samples_per_s"] == pytest.approx(rate * per_message, abs=per_message)
        copy = max(scenario["copy_binary_rows_per_s"], scenario["copy_text_rows_per_s"])
        for ratio, expected in (
            ("ratio_vs_bare_receive", rate / scenario["bare_receive_messages_per_s"]),
            ("ratio_vs_lean_receive", rate / scenario["lean_receive_messages_per_s"]),
            ("ratio_vs_copy", rate * per_message / copy),
        ):
            assert scenario[ratio] == pytest.approx(expected, rel=0.01, abs=0.002), ratio
        assert scenario["rounds"] == [{k: v for k, v in scenario.items()
                                       if k.startswith("ratio")}]
    assert result["batched"]["samples_per_message"] == PER_MESSAGE
    assert list(tmp_path.iterdir()) == []  # its private broker's directory and queues too
