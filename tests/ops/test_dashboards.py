"""Grafana dashboards: valid dashboard JSON, and every SQL query runs on the migrated schema.

The SQL is rendered the way Grafana renders it (tests/ops/grafana.py) and executed against a
fresh database filled with a small fleet whose expected figures are worked out by hand below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import yaml

from tests.databases import DatabaseStock
from tests.ops import grafana
from tests.ops.grafana import TimeRange

PG_TYPE = "grafana-postgresql-datasource"
PANEL_TYPES = {"row", "stat", "table", "timeseries", "barchart", "bargauge", "piechart",
               "state-timeline", "text", "gauge"}
NOW = datetime.now(UTC).replace(microsecond=0)
RANGE = TimeRange(NOW - timedelta(days=2), NOW)
H = 3600.0


def _datasources() -> dict[str, str]:
    config = yaml.safe_load(grafana.DATASOURCES_FILE.read_text(encoding="utf-8"))
    return {ds["uid"]: ds["type"] for ds in config["datasources"]}


# -- structure ---------------------------------------------------------------------------------


def test_datasources_provisioned_without_timescale_macros() -> None:
    config = yaml.safe_load(grafana.DATASOURCES_FILE.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    by_type = {ds["type"]: ds for ds in config["datasources"]}
    assert set(by_type) == {PG_TYPE, "prometheus"}
    pg = by_type[PG_TYPE]
    # With timescaledb on, $__timeGroup becomes time_bucket(); the dashboards must also run
    # on plain PostgreSQL, and the tests expand the plain form.
    assert pg["jsonData"]["timescaledb"] is False
    assert pg["secureJsonData"]["password"].startswith("$")  # from the environment, not a literal
    assert sum(bool(ds.get("isDefault")) for ds in config["datasources"]) == 1


def test_dashboards_provider_points_at_the_mounted_folder() -> None:
    provider_file = grafana.ROOT / "dashboards/provisioning/dashboards/instrushare.yml"
    config = yaml.safe_load(provider_file.read_text(encoding="utf-8"))
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((grafana.ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts


def test_dashboards_are_valid_grafana_json() -> None:
    dashboards = grafana.load_dashboards()
    assert {"fleet.json", "ingest.json", "utilisation.json"} <= set(dashboards)
    sources = _datasources()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))
    assert len({d["title"] for d in dashboards.values()}) == len(dashboards)
    for name, dash in dashboards.items():
        assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36, name
        assert 0 < len(dash["uid"]) <= 40 and re.fullmatch(r"[\w-]+", dash["uid"]), name
        assert dash.get("id") is None, f"{name}: provisioned dashboards carry no database id"
        assert set(dash["time"]) == {"from", "to"}
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for var in variables.values():
            if "datasource" in var:
                assert sources[var["datasource"]["uid"]] == var["datasource"]["type"]
        panels = list(grafana.all_panels(dash))
        titles = [p["title"] for p in panels]
        assert len(titles) == len(set(titles)), f"{name}: panel titles repeat"
        ids = [p["id"] for p in panels]
        assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), name
        for panel in panels:
            where = f"{name} panel {panel['id']} {panel['title']!r}"
            assert panel["type"] in PANEL_TYPES, where
            pos = panel["gridPos"]
            assert {k: type(v) for k, v in pos.items()} == dict.fromkeys("hwxy", int), where
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, where
            if panel["type"] == "row":
                continue
            assert panel["targets"], where
            assert sources[panel["datasource"]["uid"]] == panel["datasource"]["type"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                ds = target["datasource"]
                assert sources[ds["uid"]] == ds["type"], where
                if ds["type"] == PG_TYPE:
                    assert target["rawQuery"] is True and target["format"] in (
                        "table", "time_series"), where
                    _check_variables(target["rawSql"], variables, where)
                else:
                    assert target["expr"].strip(), where
        _check_no_overlap(name, panels)


def _series_unit(panel: dict[str, Any], series: str) -> str | None:
    """The unit a series is shown in: an override by its name, else the panel's default."""
    config = panel.get("fieldConfig", {})
    unit: str | None = config.get("defaults", {}).get("unit")
    for override in config.get("overrides", []):
        if override["matcher"] == {"id": "byName", "options": series}:
            unit = next((p["value"] for p in override["properties"] if p["id"] == "unit"), unit)
    return unit


def test_every_duration_from_prometheus_is_shown_in_seconds() -> None:
    """A time drawn without a unit, beside a count, reads as a line stuck at zero: an operator
    told to watch the batch write time would see nothing."""
    unitless = []
    for name, dash in grafana.load_dashboards().items():
        for panel in grafana.all_panels(dash):
            for target in panel.get("targets", []):
                if "_seconds" in target.get("expr", "") and _series_unit(
                        panel, target.get("legendFormat", "")) != "s":
                    unitless.append(f"{name} {panel['title']!r}: {target['legendFormat']}")
    assert unitless == []


def test_no_panel_shows_hours_in_grafanas_duration_unit() -> None:
    """Grafana's ``h`` unit is a duration: it writes 200 machine hours as "1.19 week". Machine
    hours summed over instruments are a quantity, shown with the plain suffix ``suffix:h``."""
    scaled = []
    for name, dash in grafana.load_dashboards().items():
        for panel in grafana.all_panels(dash):
            config = panel.get("fieldConfig", {})
            units = [config.get("defaults", {}).get("unit")] + [
                p["value"] for o in config.get("overrides", []) for p in o["properties"]
                if p["id"] == "unit"]
            if "h" in units:
                scaled.append(f"{name} {panel['title']!r}")
    assert scaled == []


def test_message_queries_bound_the_partition_column() -> None:
    """ingested_message is a hypertable partitioned by created_at: a query that filters only on
    received_at (not indexed) would read every chunk of the 60 days kept."""
    queries = [t for t in grafana.targets(PG_TYPE) if "ingested_message" in t.target["rawSql"]]
    assert len(queries) >= 3
    for target in queries:
        sql = " ".join(target.target["rawSql"].split())
        assert ("created_at BETWEEN $__timeFrom()::timestamptz - INTERVAL '31 days'"
                " AND $__timeTo()::timestamptz + INTERVAL '5 minutes'") in sql, target.panel_title


INSTITUTION_FILTER = "IN (SELECT institution_subtree(ARRAY[$institution]))"
SESSIONS = ("dashboard_sessions($__timeFrom(), $__timeTo(), ARRAY[$institution],\n"
            "                            make_interval(secs => $no_show_grace_s))")


def test_every_institution_filter_takes_in_sub_units() -> None:
    """Two filter forms, both walking the tree: a panel comparing with ``$institution``
    itself would drop the sub-units of a chosen university. Session hours all come from
    dashboard_sessions(), which filters the same way. The variable offers the same choices
    everywhere."""
    variables = [v for d in grafana.load_dashboards().values() for v in d["templating"]["list"]
                 if v["name"] == "institution"]
    assert len(variables) == 2 and variables[0] == variables[1]
    filters = calls = 0
    for target in grafana.targets(PG_TYPE):
        sql = target.target["rawSql"]
        assert sql.count("$institution") == (sql.count(INSTITUTION_FILTER)
                                             + sql.count(SESSIONS)), target.panel_title
        filters += sql.count(INSTITUTION_FILTER)
        calls += sql.count(SESSIONS)
    assert (filters, calls) == (8, 4)


def _check_variables(sql: str, variables: dict[str, Any], where: str) -> None:
    """Every $name is a Grafana macro, a global variable, or one of the dashboard's variables."""
    for name in re.findall(r"\$(\w+)", sql):
        if name.startswith("__"):
            assert name in {"__interval", "__interval_ms", "__timeFilter", "__timeFrom",
                            "__timeTo", "__timeGroup", "__timeGroupAlias"}, (where, name)
        else:
            assert name in variables, (where, name)


def _check_no_overlap(name: str, panels: list[dict[str, Any]]) -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{name}: panels {cells.get((x, y))} and {panel['id']}"
                cells[(x, y)] = panel["id"]


def test_macro_expansion_matches_grafana() -> None:
    """Spot checks against the strings Grafana's macros.go produces."""
    rng = TimeRange(datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
                    datetime(2024, 5, 1, 9, 30, 0, 250000, tzinfo=UTC))
    assert grafana.expand_macros("WHERE $__timeFilter(ts)", rng) == (
        "WHERE ts BETWEEN '2024-05-01T08:00:00Z' AND '2024-05-01T09:30:00.25Z'")
    assert grafana.expand_macros("SELECT $__timeGroupAlias(ts, 5m), 1", rng) == (
        'SELECT floor(extract(epoch from ts)/300)*300 AS "time", 1')
    assert grafana.expand_macros("GROUP BY $__timeGroup(ts, '1h')", rng) == (
        "GROUP BY floor(extract(epoch from ts)/3600)*3600")
    assert grafana.interpolate("x IN ($inst) AND $__timeFrom()", {"inst": "'a','b'"}) == (
        "x IN ('a','b') AND $__timeFrom()")
    with pytest.raises(grafana.MacroError):
        grafana.expand_macros("$__timeBucket(ts)", rng)


# -- queries against data ----------------------------------------------------------------------


def _fill(conn: psycopg.Connection[Any]) -> None:
    """A small fleet with known figures (see the expectations in the tests below)."""

    def ago(**kw: float) -> datetime:
        return NOW - timedelta(**kw)

    conn.execute("""
        INSERT INTO institution (id, name, parent_id) VALUES
            ('univ', 'University', NULL), ('univ-lab', 'University lab', 'univ'),
            ('other', 'Other institute', NULL)""")
    conn.execute("""
        INSERT INTO platform_user (id, name, institution_id, organisation, approved) VALUES
            ('u-in', 'Inside', 'univ', '', true), ('u-ext', 'Outside', 'other', '', true),
            ('u-firm', 'Firm', NULL, 'Some Firm Ltd', true),
            ('u-new', 'Not yet approved', 'other', '', false)""")
    instruments = [("i-run", "univ-lab", "gw-1"), ("i-fault", "univ", "gw-1"),
                   ("i-stale", "univ-lab", "gw-1"), ("i-gwdown", "other", "gw-2"),
                   ("i-none", "other", None), ("i-idle", "other", "gw-1")]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO instrument (id, name, institution_id, gateway_id) VALUES (%s, %s, %s, %s)",
            [(i, i.upper(), inst, gw) for i, inst, gw in instruments])
        cur.executemany(
            "INSERT INTO gateway (id, bd_seq, online, changed_at, instruments, software,"
            " dropped) VALUES (%s, %s, %s, %s, %s, 'gw 0.1', %s)",
            [("gw-1", 3, True, ago(days=1), ["i-run", "i-fault", "i-stale", "i-idle"], 0),
             ("gw-2", 5, False, ago(minutes=5), ["i-gwdown"], 12),
             # a gateway whose births never said what its outbox dropped
             ("gw-3", 1, True, ago(hours=2), [], None)])
        cur.executemany(
            "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, user_id,"
            " power_w, last_ts) VALUES (%s, %s, %s, %s, NULL, 100, %s)",
            [("i-run", "gw-1", "running", ago(minutes=30), ago(seconds=10)),
             ("i-fault", "gw-1", "fault", ago(hours=1), ago(seconds=20)),
             ("i-stale", "gw-1", "idle", ago(hours=3), ago(minutes=40)),
             ("i-gwdown", "gw-2", "idle", ago(hours=3), ago(seconds=5)),
             ("i-idle", "gw-1", "idle", ago(hours=3), ago(seconds=15))])
        cur.executemany(
            "INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            [("i-run", ago(days=3), ago(days=2, hours=-1), ago(days=2, hours=-1), "u-ext"),
             ("i-run", ago(hours=10), ago(hours=8), ago(hours=8), "u-in"),
             ("i-run", ago(minutes=30), None, ago(seconds=10), "u-firm"),
             # by an outside user not yet approved: effective, never external
             ("i-fault", ago(hours=5), ago(hours=4), ago(hours=4), "u-new"),
             ("i-idle", ago(hours=20), ago(hours=19, minutes=30), ago(hours=19, minutes=30),
              "ghost"),
             # no user reported, started inside u-firm's booking and 10 min after u-ext's
             # ended: the nearest booking's, so u-firm's, an outside user's (docs/metrics.md,
             # "Users by booking")
             ("i-idle", ago(hours=18, minutes=50), ago(hours=18, minutes=40),
              ago(hours=18, minutes=40), None),
             ("i-stale", ago(days=5), ago(days=4), ago(days=4), "u-in")])
        cur.executemany(
            "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
            " VALUES (%s, %s, 'assisted', %s, %s, %s)",
            [("i-run", "u-in", ago(hours=10, minutes=30), ago(hours=8), "approved"),  # used
             # no use inside, but the session before ended 10 minutes before: within the grace
             ("i-run", "u-ext", ago(hours=7, minutes=50), ago(hours=7), "approved"),
             ("i-fault", "u-ext", ago(hours=15), ago(hours=14), "approved"),  # no-show
             ("i-idle", "u-ext", ago(hours=20, minutes=30), ago(hours=19), "completed"),
             ("i-idle", "u-firm", ago(hours=18, minutes=55), ago(hours=18, minutes=30),
              "approved"),
             ("i-run", "u-ext", ago(hours=30), ago(hours=29), "cancelled"),  # not counted
             ("i-stale", "u-in", ago(hours=1), ago(minutes=-30), "approved"),  # not over yet
             ("i-run", "u-ext", ago(days=3, hours=2), ago(days=3, hours=1), "approved")])
        cur.executemany(
            "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq)"
            " VALUES (%s, %s, %s, %s, 'gw-1', %s)",
            [("i-run", ago(hours=10), "running", 900.0, 1), ("i-run", ago(hours=8), "idle", 80, 2),
             # heard from after their missed bookings: the no-shows are known
             ("i-fault", ago(hours=1), "fault", 0.0, 3), ("i-run", ago(minutes=30), "running",
                                                          900.0, 4)])
        cur.executemany(
            "INSERT INTO instrument_event (instrument_id, ts, type, user_id, detail, gateway_id,"
            " seq) VALUES (%s, %s, %s, %s, %s, 'gw-1', %s)",
            [("i-run", ago(hours=10), "login", "u-in", "", 1),
             ("i-fault", ago(hours=1), "fault", None, "vacuum pump", 2)])
        seqs = [s for s in range(1, 11) if s not in (4, 7)]
        cur.executemany(
            "INSERT INTO ingested_message (gateway_id, seq, created_at, instrument_id, bd_seq,"
            " historical, n_samples, n_events, received_at, arrival)"
            " VALUES ('gw-1', %s, %s, 'i-run', 3, %s, 2, 0, %s, %s)",
            [(s, ago(minutes=60 - s), s == 10, ago(minutes=60 - s, seconds=-2), s) for s in seqs])
        # gw-2's outbox was replaced: its seq counts from 0 again, which is no gap; 42 and 2
        # are missing
        cur.executemany(
            "INSERT INTO ingested_message (gateway_id, seq, created_at, instrument_id, bd_seq,"
            " historical, n_samples, n_events, received_at, arrival)"
            " VALUES ('gw-2', %s, %s, 'i-gwdown', 5, false, 1, 0, %s, %s)",
            [(s, ago(minutes=m), ago(minutes=m, seconds=-1), 100 + m)
             for s, m in ((40, 50), (41, 49), (43, 48), (0, 30), (1, 29), (3, 28))])
        cur.executemany(  # the oldest still arrives: received 4 times, last 10 minutes ago
            "INSERT INTO dead_letter (received_at, topic, payload, reason, detail, times,"
            " last_received_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(ago(hours=1), "isv1/gw/gw-1/data/i-run", b"\xff\xfe{bad", "malformed_json", "x",
              1, None),
             (ago(hours=2), "isv1/gw/gw-9/data/i-x", b'{"v": 1}', "unknown_instrument", "", 1,
              None),
             (ago(hours=3), "isv1/gw/gw-9/data/i-x", b'{"v": 1, "n": 2}', "unknown_instrument",
              "", 4, ago(minutes=10))])


@pytest.fixture(scope="module")
def filled_db(database_stock: DatabaseStock) -> Iterator[str]:
    """One filled, migrated database for the module (the queries only read); dropped after."""
    name = database_stock.take()
    try:
        url = database_stock.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            _fill(conn)
        yield url
    finally:
        database_stock.give_back([name])


def _all_institutions(conn: psycopg.Connection[Any], dash: dict[str, Any]) -> dict[str, str]:
    """Variables with the defaults a viewer sees: All institutions, heartbeat 900 s."""
    values: dict[str, str] = {}
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            rows = conn.execute(grafana.render(var["query"], time_range=RANGE, variables={},
                                               min_interval=None)).fetchall()
            assert rows, f"variable {var['name']} has no options"
            values[var["name"]] = grafana.quote_sql_values([str(r[0]) for r in rows])
        else:
            values[var["name"]] = str(var["current"]["value"])
    return values


def _run(conn: psycopg.Connection[Any], target: grafana.Target,
         variables: dict[str, str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = grafana.render(target.target["rawSql"], time_range=RANGE, variables=variables,
                         min_interval=target.panel_interval)
    cur = conn.execute(sql)
    assert cur.description is not None
    return [c.name for c in cur.description], cur.fetchall()


def _panel(dashboard: str, title: str) -> grafana.Target:
    (found,) = [t for t in grafana.targets(PG_TYPE)
                if t.dashboard == dashboard and t.panel_title == title]
    return found


SQL_TARGETS = grafana.targets(PG_TYPE)


@pytest.mark.parametrize(
    "target", SQL_TARGETS, ids=[f"{t.dashboard}:{t.panel_id}" for t in SQL_TARGETS])
def test_every_sql_query_returns_rows(filled_db: str, target: grafana.Target) -> None:
    dash = grafana.load_dashboards()[target.dashboard]
    with psycopg.connect(filled_db) as conn:
        conn.read_only = True
        columns, rows = _run(conn, target, _all_institutions(conn, dash))
    assert rows, f"{target.panel_title!r} returned no rows"
    if target.target["format"] == "time_series":
        assert columns[0] == "time"
        times = [r[0] for r in rows]
        assert times == sorted(times), "Grafana needs time series sorted by time"


def _one_row(dashboard: str, title: str, db: str,
             overrides: dict[str, str] | None = None) -> dict[str, Any]:
    target = _panel(dashboard, title)
    with psycopg.connect(db) as conn:
        variables = _all_institutions(conn, grafana.load_dashboards()[dashboard])
        columns, rows = _run(conn, target, {**variables, **(overrides or {})})
    assert len(rows) == 1
    return {c.split(" ")[0]: v for c, v in zip(columns, rows[0], strict=True)}


def _heartbeat(seconds: float) -> dict[str, str]:
    """The heartbeat variable as ``seconds`` were when the data was written, at NOW: the
    query compares with the database's now(), which moves on while the suite runs."""
    return {"heartbeat_s": str(seconds + (datetime.now(UTC) - NOW).total_seconds())}


def test_fleet_state_counts(filled_db: str) -> None:
    got = _one_row("fleet.json", "Instruments by state 仪器状态", filled_db, _heartbeat(900))
    # offline: i-stale (silent 40 min > 900 s), i-gwdown (gateway offline), i-none (never heard)
    assert got == {"running": 1, "idle": 1, "off": 0, "fault": 1, "maintenance": 0,
                   "offline": 3, "total": 6}
    only_other = _one_row("fleet.json", "Instruments by state 仪器状态", filled_db,
                          {"institution": "'other'", **_heartbeat(900)})
    assert (only_other["idle"], only_other["offline"], only_other["total"]) == (1, 2, 3)
    longer = _one_row("fleet.json", "Instruments by state 仪器状态", filled_db,
                      _heartbeat(3600))
    assert (longer["idle"], longer["offline"]) == (2, 2)
    gateways = _one_row("fleet.json", "Gateways online 网关在线", filled_db)
    assert gateways == {"online": 2, "offline": 1, "dropped": 1}


def test_gateways_that_dropped_data_are_listed(filled_db: str) -> None:
    """Only gw-2 lost data at the edge: gw-1 dropped nothing, gw-3 never said (NULL)."""
    with psycopg.connect(filled_db) as conn:
        _, rows = _run(conn, _panel("fleet.json", "Data dropped at the edge 网关丢弃数据"), {})
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [("gw-2", 12, "offline", 1)]


def test_utilisation_matches_hand_computed_hours(filled_db: str) -> None:
    # first session clipped to the range start; the last, 10 min, without a reported user
    effective = 1 + 2 + (0.5 - 10 / H) + 1 + 0.5 + 10 / 60
    # u-ext (other institute), u-firm (no institution) and u-firm's booking's
    external = 1 + (0.5 - 10 / H) + 10 / 60
    got = _one_row("utilisation.json", "Machine hours in range 统计期机时", filled_db)
    assert float(got["effective"]) == pytest.approx(effective)
    assert float(got["external"]) == pytest.approx(external)
    assert float(got["openness"]) == pytest.approx(external / effective)
    assert got["instruments"] == 3

    with psycopg.connect(filled_db) as conn:
        variables = _all_institutions(conn, grafana.load_dashboards()["utilisation.json"])

        def rows(dashboard: str, title: str) -> list[tuple[Any, ...]]:
            return _run(conn, _panel(dashboard, title), variables)[1]

        daily = rows("utilisation.json", "Machine hours per day 每日机时")
        by_inst = rows("utilisation.json", "By institution 按单位")
        unused = rows("utilisation.json", "Unused in range 统计期内未使用")
        running = rows("fleet.json", "Instruments running 运行中仪器数")
    assert sum(float(r[1]) for r in daily) == pytest.approx(effective)
    assert sum(float(r[2]) for r in daily) == pytest.approx(external)
    assert sum(float(r[3]) for r in by_inst) == pytest.approx(effective)
    assert {r[0] for r in unused} == {"i-stale", "i-gwdown", "i-none"}
    # Sampling open sessions every interval approximates the same hours.
    step_h = grafana.panel_interval_ms(RANGE, "1m") / 3_600_000
    assert sum(r[1] for r in running) * step_h == pytest.approx(effective, abs=6 * step_h)


def test_a_day_without_sessions_has_no_hours(filled_db: str) -> None:
    """A week before any session: every day of the daily panel is 0, not a whole day."""
    target = _panel("utilisation.json", "Machine hours per day 每日机时")
    quiet = TimeRange(NOW - timedelta(days=14), NOW - timedelta(days=7))
    with psycopg.connect(filled_db) as conn:
        variables = _all_institutions(conn, grafana.load_dashboards()["utilisation.json"])
        sql = grafana.render(target.target["rawSql"], time_range=quiet, variables=variables,
                             min_interval=target.panel_interval)
        rows = conn.execute(sql).fetchall()
    assert len(rows) >= 7
    assert [(float(r[1]), float(r[2])) for r in rows] == [(0.0, 0.0)] * len(rows)


def test_bookings_panel_counts_no_shows(filled_db: str) -> None:
    panel = _panel("utilisation.json", "Bookings per day 每日预约")
    with psycopg.connect(filled_db) as conn:
        variables = _all_institutions(conn, grafana.load_dashboards()["utilisation.json"])
        _, rows = _run(conn, panel, variables)
        # Without a grace the booking right after a session is a no-show too; the one that
        # started 3 days ago is outside the range, the cancelled one never counts.
        _, strict = _run(conn, panel, {**variables, "no_show_grace_s": "0"})
        _, other = _run(conn, panel, {**variables, "institution": "'other'"})
    assert (sum(r[1] for r in rows), sum(r[2] for r in rows)) == (6, 1)
    assert (sum(r[1] for r in strict), sum(r[2] for r in strict)) == (6, 2)
    assert (sum(r[1] for r in other), sum(r[2] for r in other)) == (2, 0)


def test_choosing_a_university_takes_in_its_sub_units(filled_db: str) -> None:
    """univ-lab is under univ: choosing univ counts univ-lab's instruments too, as "institution
    X" does in the API; choosing univ-lab leaves its parent out; All is every institution."""
    state = "Instruments by state 仪器状态"

    def states(institution: str | None) -> dict[str, Any]:
        chosen = {"institution": institution} if institution else {}
        return _one_row("fleet.json", state, filled_db, {**chosen, **_heartbeat(900)})

    univ = states("'univ'")  # i-fault (univ); i-run, i-stale (univ-lab, silent 40 min)
    assert univ == {"running": 1, "idle": 0, "off": 0, "fault": 1, "maintenance": 0,
                    "offline": 1, "total": 3}
    lab = states("'univ-lab'")
    assert (lab["running"], lab["fault"], lab["offline"], lab["total"]) == (1, 0, 1, 2)
    assert states("'univ','univ-lab'") == univ  # a sub-unit chosen with its parent counts once
    assert states(None)["total"] == univ["total"] + states("'other'")["total"] == 6

    # i-run: 1 h clipped (u-ext), 2 h (u-in), 0.5 h - 10 s open (u-firm); i-fault: 1 h (u-new)
    got = _one_row("utilisation.json", "Machine hours in range 统计期机时", filled_db,
                   {"institution": "'univ'"})
    assert float(got["effective"]) == pytest.approx(1 + 2 + (0.5 - 10 / H) + 1)
    assert float(got["external"]) == pytest.approx(1 + (0.5 - 10 / H))
    assert got["instruments"] == 2
    with psycopg.connect(filled_db) as conn:
        variables = _all_institutions(conn, grafana.load_dashboards()["utilisation.json"])
        assert variables["institution"] == "'other','univ','univ-lab'"
        _, by_inst = _run(conn, _panel("utilisation.json", "By institution 按单位"),
                          {**variables, "institution": "'univ'"})
    assert [(r[0], r[2]) for r in by_inst] == [("univ-lab", 2), ("univ", 1)]
    assert [float(r[3]) for r in by_inst] == pytest.approx([3.5 - 10 / H, 1.0])


def test_institution_choices_show_the_tree(filled_db: str) -> None:
    """A sub-unit is offered under its parent, named by its path."""
    (query,) = [v["query"] for v in grafana.load_dashboards()["fleet.json"]["templating"]["list"]
                if v["name"] == "institution"]
    with psycopg.connect(filled_db) as conn:
        rows = conn.execute(query).fetchall()
    assert rows == [("other", "Other institute"), ("univ", "University"),
                    ("univ-lab", "University / University lab")]


def test_subtree_of_unknown_ids_is_empty_and_a_cycle_ends(database_url: str) -> None:
    """A cycle made before the tree trigger existed must not hang every dashboard."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO institution (id, name) VALUES ('a', 'A'), ('b', 'B'),"
                     " ('c', 'C')")
        conn.execute("ALTER TABLE institution DISABLE TRIGGER institution_stays_a_tree")
        conn.execute("UPDATE institution SET parent_id = CASE id WHEN 'a' THEN 'b' ELSE 'a' END"
                     " WHERE id IN ('a', 'b')")

        def subtree(*ids: str) -> list[str]:
            return sorted(r[0] for r in conn.execute(
                "SELECT institution_subtree(%s::text[])", (list(ids),)))

        assert subtree("a") == ["a", "b"]
        assert subtree("c", "nowhere") == ["c"]
        assert subtree("nowhere") == []


def test_ingest_panels_find_gaps_and_dead_letters(filled_db: str) -> None:
    with psycopg.connect(filled_db) as conn:
        _, gaps = _run(conn, _panel("ingest.json", "Sequence gaps by gateway 序号缺口"), {})
        _, letters = _run(conn, _panel("ingest.json", "Latest dead letters 最新死信"), {})
        _, stored = _run(conn, _panel("ingest.json", "Messages stored 入库消息"), {})
    assert [r[:6] for r in gaps] == [("gw-1", 1, 10, 8, 2, 0), ("gw-2", 40, 3, 6, 2, 1)]
    # latest arrival first, the first one and the count beside it
    assert [(r[4], r[3]) for r in letters] == [
        ("isv1/gw/gw-9/data/i-x", 4), ("isv1/gw/gw-1/data/i-run", 1),
        ("isv1/gw/gw-9/data/i-x", 1)]
    assert sum(r[1] for r in stored) == 14 and sum(r[3] for r in stored) == 1
    assert _one_row("ingest.json", "Dead letters in range 死信数", filled_db) == {
        "dead": 3, "received": 6, "reasons": 2}
