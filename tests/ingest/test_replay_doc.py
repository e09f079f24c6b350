"""The dead-letter replay script in docs/ingest.md runs as printed and stores what it replays."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from instrushare.protocol import Topics

from .conftest import BASE, Publisher, RunningWorker, data_message, query, register, wait_until

DOC = Path(__file__).parents[2] / "docs" / "ingest.md"


def _script() -> str:
    section = DOC.read_text().split("### Replaying dead letters", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "no script in the replay section"
    return found.group(1)


def test_replayed_dead_letters_are_stored(
    database_url: str,
    mqtt_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    tmp_path: Path,
) -> None:
    register(database_url, {"i1": "gw1"})
    worker = start_worker(database_url).worker
    late = [data_message("gw1", "late", seq, [(BASE.replace(second=seq), "idle", None)])
            for seq in (1, 2)]
    publisher.publish_all([(topics.data("gw1", "late"), p) for p in late])
    wait_until(lambda: worker.stats.dead_lettered.get("unknown_instrument") == 2,
               what="dead-lettered")

    register(database_url, {"late": "gw1"})
    script = tmp_path / "replay_dead_letters.py"
    script.write_text(_script())
    done = subprocess.run(
        [sys.executable, str(script), "unknown_instrument", f"{topics.prefix}/gw/%/data/late"],
        env=os.environ | {"DATABASE_URL": database_url, "MQTT_URL": mqtt_url},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "re-published 2 dead letters" in done.stdout
    wait_until(lambda: worker.stats.written == 2, what="replayed messages stored")
    assert query(database_url, "SELECT count(*) FROM dead_letter") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM state_sample WHERE instrument_id = 'late'"
                 ) == [(2,)]
