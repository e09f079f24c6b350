"""``instrushare dead-letters``: counted, and replayed once the cause is fixed, through the
ingest's own decoding and storing, judged by the time each message first arrived."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.dead_letters import Selection, replay
from instrushare.protocol import MAX_PAST_AGE, DataMessage, Sample, Topics, dumps
from tests.services import free_port

from .conftest import (
    BASE,
    GAP_S,
    Publisher,
    RunningWorker,
    data_message,
    query,
    register,
    wait_until,
)


def _run(database_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "instrushare", "dead-letters", *args],
        env=os.environ | {"DATABASE_URL": database_url, "INSTRUSHARE_TOPIC_PREFIX": prefix,
                          "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=False,
    )


def _cli(database_url: str, prefix: str, *args: str) -> str:
    done = _run(database_url, prefix, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _dead(database_url: str) -> list[tuple[str, str, datetime]]:
    return query(database_url,
                 "SELECT reason, topic, received_at FROM dead_letter ORDER BY reason")


def test_replay_stores_what_the_registry_now_knows(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": "gw1"})
    worker = start_worker(database_url).worker
    late = [
        data_message("gw1", "late", 1, [(BASE, "running", "u1"),
                                        (BASE + timedelta(minutes=1), "running", "u1")]),
        data_message("gw1", "late", 2, [(BASE + timedelta(minutes=2), "running", "u1"),
                                        (BASE + timedelta(minutes=3), "idle", None)]),
    ]
    publisher.publish_all([
        *[(topics.data("gw1", "late"), p) for p in late],
        (topics.data("gw2", "i1"), data_message("gw2", "i1", 1, [(BASE, "idle", None)])),
        (topics.data("gw1", "i1"), b"{not json"),
    ])
    wait_until(lambda: sum(worker.stats.dead_lettered.values()) == 4, what="dead-lettered")
    prefix = topics.prefix

    listed = _cli(database_url, prefix, "list")
    assert f"unknown_instrument\t{prefix}/gw/gw1/data/late\t2\t2\t" in listed  # whole, piped
    assert listed.rstrip().endswith("4 dead letter(s), received 4 time(s)")
    assert "2 dead letter(s)" in _cli(database_url, prefix, "list", "--reason",
                                      "unknown_instrument")

    register(database_url, {"late": "gw1"})
    out = _cli(database_url, prefix, "replay", "--reason", "unknown_instrument",
               "--topic", f"{prefix}/gw/%/late")
    assert out.strip() == ("replayed 2 dead letter(s): 2 message(s) stored, 0 already stored,"
                           " dead-lettered again: none")
    assert query(database_url, "SELECT count(*) FROM state_sample WHERE instrument_id = 'late'"
                 ) == [(4,)]
    assert query(database_url, "SELECT start_ts, end_ts, user_id FROM usage_session"
                 " WHERE instrument_id = 'late'") == [(BASE, BASE + timedelta(minutes=3), "u1")]
    before = _dead(database_url)
    assert [r[0] for r in before] == ["malformed_json", "wrong_gateway"]

    # the causes of the others are not fixed: dead-lettered anew, as they first arrived
    out = _cli(database_url, prefix, "replay")
    assert out.strip() == ("replayed 2 dead letter(s): 0 message(s) stored, 0 already stored,"
                           " dead-lettered again: 1 malformed_json, 1 wrong_gateway")
    assert _dead(database_url) == before
    assert "no dead letters" in _cli(database_url, prefix, "list", "--topic", "nothing/%")


def test_replay_judges_each_message_by_its_first_arrival(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": "gw1"})
    now = datetime.now(UTC).replace(microsecond=0)
    # five messages whose clock ran 10 min ahead when they arrived two hours ago: on arrival
    # now they would pass, but they are judged as they arrived
    arrived = now - timedelta(hours=2)
    ahead = [
        (topics.data("gw1", "i1"), _future_message(seq, created=arrived + timedelta(minutes=10)),
         arrived)
        for seq in range(1, 6)
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO dead_letter (topic, payload, reason, received_at)"
            " VALUES (%s, %s, 'future_timestamp', %s)", ahead)
    progress: list[tuple[int, int]] = []
    result = replay(database_url, Selection("future_timestamp"), prefix=topics.prefix,
                    session_max_gap=timedelta(seconds=GAP_S), chunk=2,
                    on_progress=lambda done, total: progress.append((done, total)))
    assert progress == [(2, 5), (4, 5), (5, 5)]  # each taken once, though written anew
    assert (result.replayed, result.written.fresh, dict(result.written.dead)) == (
        5, 0, {"future_timestamp": 5})
    assert query(database_url, "SELECT count(*), min(received_at), max(received_at)"
                 " FROM dead_letter") == [(5, arrived, arrived)]

    # a stored message whose too-old sample was dead-lettered is a duplicate on replay
    worker = start_worker(database_url).worker
    publisher.publish_all([(topics.data("gw1", "i1"), data_message(
        "gw1", "i1", 9, [(now - MAX_PAST_AGE - timedelta(days=1), "idle", None),
                         (BASE, "idle", None)]))])
    wait_until(lambda: worker.stats.dead_lettered.get("too_old") == 1, what="too old")
    result = replay(database_url, Selection("too_old"), prefix=topics.prefix,
                    session_max_gap=timedelta(seconds=GAP_S))
    written = result.written
    assert (result.replayed, written.fresh, written.duplicates, dict(written.dead)) == (
        1, 0, 1, {"too_old": 1})
    assert query(database_url, "SELECT count(*) FROM state_sample") == [(1,)]


def _future_message(seq: int, *, created: datetime) -> bytes:
    """A message from gw1 about i1 created at ``created`` (by the gateway's clock)."""
    return dumps(DataMessage(
        v=1, gateway="gw1", instrument="i1", seq=seq, bd_seq=1, created_at=created,
        samples=[Sample(ts=created - timedelta(minutes=1), state="idle")],  # type: ignore[arg-type]
    ))


def test_a_narrow_terminal_folds_reason_and_topic_but_shows_them_whole(
    database_url: str, topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}/gw/gw-dlut-analysis-01/data/xrd-d8-advance-{'x' * 30}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dead_letter (topic, payload, reason, received_at)"
                     " VALUES (%s, 'x', 'unknown_instrument', now())", (topic,))
    shown = subprocess.run(
        [sys.executable, "-m", "instrushare", "dead-letters", "list"],
        env=os.environ | {"DATABASE_URL": database_url, "TTY_COMPATIBLE": "1", "NO_COLOR": "1",
                          "COLUMNS": "80"},  # rich takes it for a terminal
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    row = [line.split("│") for line in shown.splitlines() if line.startswith("│")]
    assert ["".join(cells[k].strip() for cells in row) for k in (1, 2)] == [
        "unknown_instrument", topic]
    assert "…" not in shown


def test_a_mistyped_reason_or_an_unreachable_database_is_a_clear_error(
    database_url: str,
) -> None:
    done = _run(database_url, "isv1", "replay", "--reason", "unknwon_instrument")
    assert done.returncode == 2
    assert "no such reason 'unknwon_instrument'" in done.stderr
    assert "unknown_instrument" in done.stderr
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x?connect_timeout=2"
    for command in ("list", "replay"):
        done = _run(nowhere, "isv1", command)
        assert done.returncode == 1
        assert done.stderr.startswith("instrushare: database failed: connection failed: ")
        assert "Traceback" not in done.stderr


def _insert(database_url: str, *rows: tuple[str, bytes, str]) -> None:
    """Dead letters (topic, payload, reason) received now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO dead_letter (topic, payload, reason, received_at)"
                                  " VALUES (%s, %s, %s, now())", rows)


def test_replay_takes_only_dead_letters_under_the_ingest_prefix(
    database_url: str, topics: Topics,
) -> None:
    """Under another INSTRUSHARE_TOPIC_PREFIX every topic would be foreign: dead-lettered
    anew as unknown_topic, the reason it was refused for lost. None under it: nothing is
    replayed, exit 2; some: only those, the others named and left as they were."""
    register(database_url, {"i1": "gw1"})
    prefix, old = topics.prefix, f"{topics.prefix}-old"
    _insert(database_url, *[
        (topics.data("gw1", "i1"), data_message("gw1", "i1", seq, [(BASE, "idle", None)]),
         "unknown_instrument") for seq in (1, 2)])
    before = _dead(database_url)
    wrong = _run(database_url, "isv1", "replay")
    assert (wrong.returncode, wrong.stderr) == (2, (
        "instrushare: none of the 2 chosen dead letter(s) has a topic under"
        f" INSTRUSHARE_TOPIC_PREFIX 'isv1'; their topics start with '{prefix}' (2): set"
        " INSTRUSHARE_TOPIC_PREFIX to the prefix of the ingest that refused them (nothing was"
        " replayed)\n"))
    assert _dead(database_url) == before

    foreign = Topics(old).data("gw1", "i1")
    _insert(database_url, (foreign, data_message("gw1", "i1", 3, [(BASE, "idle", None)]),
                           "unknown_instrument"))
    out = _cli(database_url, prefix, "replay")
    assert out.splitlines() == [
        f"replaying the 2 chosen dead letter(s) under INSTRUSHARE_TOPIC_PREFIX '{prefix}';"
        f" leaving those under other prefixes: '{old}' (1)",
        "replayed 2 dead letter(s): 2 message(s) stored, 0 already stored, dead-lettered"
        " again: none"]
    assert [row[:2] for row in _dead(database_url)] == [("unknown_instrument", foreign)]


def test_a_tab_or_line_break_in_a_topic_keeps_a_piped_row_on_one_line(
    database_url: str, topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}/gw/gw1\tx/data/a\nb\\c"
    _insert(database_url, (topic, b"x", "unknown_topic"))
    lines = _cli(database_url, topic_prefix, "list").splitlines()
    assert len(lines) == 3 and lines[2] == "1 dead letter(s), received 1 time(s)"
    assert lines[1].split("\t")[:3] == [
        "unknown_topic", f"{topic_prefix}/gw/gw1\\tx/data/a\\nb\\\\c", "1"]


def test_a_terminal_table_shows_tabs_line_breaks_and_brackets_of_a_topic_as_piped(
    database_url: str, topic_prefix: str,
) -> None:
    topics = [f"{topic_prefix}/gw/gw1\tx/data/a\nb\\c", f"{topic_prefix}/gw/[/x]/data/[bold]y"]
    _insert(database_url, *[(t, b"x", "unknown_topic") for t in topics])
    shown = subprocess.run(
        [sys.executable, "-m", "instrushare", "dead-letters", "list"],
        env=os.environ | {"DATABASE_URL": database_url, "TTY_COMPATIBLE": "1", "NO_COLOR": "1",
                          "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    rows = [line.split("│") for line in shown.splitlines() if line.startswith("│")]
    assert sorted(cells[2].strip() for cells in rows) == sorted([
        f"{topic_prefix}/gw/gw1\\tx/data/a\\nb\\\\c", f"{topic_prefix}/gw/[/x]/data/[bold]y"])
