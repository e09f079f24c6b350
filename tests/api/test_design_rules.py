"""The boundaries of the metric and evaluation rules of docs/metrics.md, against values
computed by hand from their wording: inclusive and exclusive ends, the states availability
counts, thresholds that are met exactly, caps, and what rounding may and may not change.

Days are in Asia/Shanghai; 2026-03-10 is the day reported on unless a test says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest._config import IngestConfig
from ingest._derive import Before, appended_sessions
from monitor_api import ApiSettings, EvaluationRules
from monitor_api.evaluation import REGISTRY_FIELDS, Span, grade, score_instrument, stars
from monitor_api.report import SHANGHAI
from monitor_api.reported_use import compare
from tests.api.conftest import Api
from tests.api.test_scores import REGISTRY, START, YEAR_S

DAY = "2026-03-10"


def _report(api: Api, **params: str) -> dict[str, dict[str, Any]]:
    """The utilisation report of ``DAY`` per instrument (or of the period given)."""
    with api.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": DAY, "end": DAY, **params})
    assert r.status_code == 200, r.text
    return {item["key"]: item for item in r.json()["items"]}


def _samples(api: Api, instrument: str, first: str, last: str, step: str, state: str) -> None:
    """State samples every ``step`` from ``first`` to ``last`` (local times, both included)."""
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " SELECT %s, t, %s, 'gw', 0 FROM generate_series(%s::timestamptz,"
            " %s::timestamptz, %s::interval) t", (instrument, state, first, last, step))


def _sessions(api: Api, instrument: str, rows: list[tuple[str, str, str | None]]) -> None:
    """Closed usage sessions (start, end, user) on ``DAY``, local times."""
    api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " SELECT %s, s, e, e, u FROM unnest(%s::timestamptz[], %s::timestamptz[],"
            " %s::text[]) v (s, e, u)",
            (instrument, [f"{DAY} {s}+08" for s, _, _ in rows],
             [f"{DAY} {e}+08" for _, e, _ in rows], [u for _, _, u in rows]))


def test_availability_counts_states_gaps_and_silences(api: Api) -> None:
    """Up: off, idle, running, maintenance; down: fault, a gap longer than the 15 min timeout
    (all of it), time before the first sample and a trailing silence (a gap to now).

    sem: off 00-06, maintenance 06-12, running 12-14, fault 14-16, idle 16:00-17:45, each
    sample 15 min after the last (a gap equal to the timeout is not offline), then none until
    18:10 (25 min: offline from 17:45), idle every 15 min from 18:10 into the next day:
    up 6 + 6 + 2 + 1.75 + 5 h 50 min = 21.5833 of 24 h; one fault.
    inc1: first sample 06:00, idle every 15 min into the next day: up 18 of 24 h.
    xrd: idle every 10 min from 23:50 the day before to 23:50, none since: up 23 h 50 min.
    nmr: never heard from: 0."""
    for first, last, state in (("00:00", "05:45", "off"), ("06:00", "11:45", "maintenance"),
                               ("12:00", "13:45", "running"), ("14:00", "15:45", "fault"),
                               ("16:00", "17:45", "idle")):
        _samples(api, "sem", f"{DAY} {first}+08", f"{DAY} {last}+08", "15 minutes", state)
    _samples(api, "sem", f"{DAY} 18:10+08", "2026-03-11 00:10+08", "15 minutes", "idle")
    _samples(api, "inc1", f"{DAY} 06:00+08", "2026-03-11 00:00+08", "15 minutes", "idle")
    _samples(api, "xrd", "2026-03-09 23:50+08", f"{DAY} 23:50+08", "10 minutes", "idle")
    got = {k: (v["availability"], v["faults"]) for k, v in _report(api).items()}
    assert got == {"sem": (round(21.5 / 24 + 5 / 60 / 24, 4), 1), "inc1": (0.75, 0),
                   "xrd": (round(23 / 24 + 50 / 60 / 24, 4), 0), "nmr": (0, 0)}


def test_noise_and_certification_boundaries(api: Api) -> None:
    """On sem, min_session_s = 60: a session of exactly 60 s counts, one of 59 s is noise.
    Certified is valid_from <= start < valid_until and not revoked by the start:
    in1 certified from the very start of 10:00-11:00 (certified); out1 until 12:00, the start
    of 12:00-13:00 (uncertified); firm1 revoked at 14:00, the start of 14:00-15:00
    (uncertified). Effective 3 h + 60 s; uncertified 2 h in 2 sessions."""
    api.sql("UPDATE instrument SET min_session_s = 60 WHERE id = 'sem'")
    _sessions(api, "sem", [("08:00:00", "08:01:00", None), ("09:00:00", "09:00:59", None),
                           ("10:00", "11:00", "in1"), ("12:00", "13:00", "out1"),
                           ("14:00", "15:00", "firm1")])
    api.sql("INSERT INTO certification (user_id, instrument_id, level, valid_from, valid_until,"
            " revoked_at) VALUES ('in1', 'sem', 'self', %s, NULL, NULL),"
            " ('out1', 'sem', 'self', '2026-01-01+08', %s, NULL),"
            " ('firm1', 'sem', 'self', '2026-01-01+08', NULL, %s)",
            tuple(f"{DAY} {t}+08" for t in ("10:00", "12:00", "14:00")))
    sem = _report(api)["sem"]
    assert (sem["sessions"], sem["effective_hours"]) == (4, round(3 + 60 / 3600, 4))
    assert (sem["uncertified_sessions"], sem["uncertified_hours"]) == (2, 2)


def test_no_show_window_ends_are_exclusive(api: Api) -> None:
    """Grace 30 min: the widened window is [start - 30 min, end + 30 min). Approved bookings
    on sem 10-11, 14-15 and 17-18; sessions 11:30-12:00 (starts at the widened end),
    13:00-13:30 (ends at the widened start) and 16:00-16:30:01 (one second inside): two
    no-shows. All three sessions lie outside the booked windows themselves: unbooked
    1.5 h + 1 s. The platform heard from sem at 23:00."""
    api.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
            " SELECT 'sem', 'in1', 'self', s, e, 'approved'"
            " FROM unnest(%s::timestamptz[], %s::timestamptz[]) v (s, e)",
            ([f"{DAY} {h}:00+08" for h in (10, 14, 17)],
             [f"{DAY} {h}:00+08" for h in (11, 15, 18)]))
    _sessions(api, "sem", [("11:30", "12:00", "in1"), ("13:00", "13:30", "in1"),
                           ("16:00", "16:30:01", "in1")])
    _samples(api, "sem", f"{DAY} 23:00+08", f"{DAY} 23:00+08", "1 minute", "idle")
    sem = _report(api)["sem"]
    assert (sem["bookings"], sem["no_shows"]) == (3, 2)
    assert sem["unbooked_hours"] == round(1.5 + 1 / 3600, 4)


def test_outside_users_are_judged_by_top_level_institution(api: Api) -> None:
    """nmr belongs to uni-ac (under uni). A user of uni-chem, another unit of uni, is inside;
    users of other and of its lab other-lab are outside, of one organisation: 2 h external of
    3 h, 2 outside users, 1 outside organisation. inc1, unused, has no openness ratio."""
    api.sql("INSERT INTO institution (id, name, parent_id, tier, region) VALUES"
            " ('uni-chem', '化学学院', 'uni', 'voucher', ''),"
            " ('other-lab', '大连理工大学实验室', 'other', 'service', '')")
    api.sql("INSERT INTO platform_user (id, name, institution_id, organisation, approved) VALUES"
            " ('chem1', '化学学院用户', 'uni-chem', '东北大学', true),"
            " ('lab1', '外单位实验室用户', 'other-lab', '大连理工大学', true)")
    _sessions(api, "nmr", [("09:00", "10:00", "chem1"), ("10:00", "11:00", "out1"),
                           ("11:00", "12:00", "lab1")])
    report = _report(api)
    nmr = report["nmr"]
    assert (nmr["effective_hours"], nmr["external_hours"]) == (3, 2)
    assert nmr["openness_ratio"] == round(2 / 3, 4)
    assert (nmr["outside_users"], nmr["outside_organisations"]) == (2, 1)
    assert report["inc1"]["openness_ratio"] is None


def test_silent_means_more_than_n_days(api: Api) -> None:
    """30 days: sem last heard 30 days less an hour ago (not listed), xrd 30 days and an hour
    ago (listed, 30 days), inc1's gateway offline for 31 days (listed, 31 days), nmr's
    offline for 29 days (not listed)."""
    now = datetime.now(UTC)
    gateways = [("on", True, now), ("off31", False, now - timedelta(days=31)),
                ("off29", False, now - timedelta(days=29))]
    for gateway, online, changed in gateways:
        api.sql("INSERT INTO gateway (id, bd_seq, online, changed_at) VALUES (%s, 1, %s, %s)",
                (gateway, online, changed))
    status = [("sem", "on", now - timedelta(days=30) + timedelta(hours=1)),
              ("xrd", "on", now - timedelta(days=30, hours=1)),
              ("inc1", "off31", now - timedelta(days=31)),
              ("nmr", "off29", now - timedelta(days=29))]
    for instrument, gateway, last in status:
        api.sql("INSERT INTO instrument_status (instrument_id, gateway_id, state, since, last_ts)"
                " VALUES (%s, %s, 'idle', %s, %s)", (instrument, gateway, last, last))
    with api.as_("evaluator") as c:
        items = c.get("/evaluation/silent").json()["items"]
    assert {i["instrument_id"]: i["silent_days"] for i in items} == {"xrd": 30, "inc1": 31}


def test_low_utilisation_is_strictly_below_the_threshold(api: Api) -> None:
    """2025, below 10 h (none of the seeded instruments has a date: each is judged on the
    whole year): sem's 10 h exactly are not below; xrd's 9 h 59 min are; nmr and inc1, unused,
    are."""
    api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " VALUES ('sem', '2025-06-02 08:00+08', '2025-06-02 18:00+08',"
            "         '2025-06-02 18:00+08', 'in1'),"
            "        ('xrd', '2025-06-02 08:00+08', '2025-06-02 17:59+08',"
            "         '2025-06-02 17:59+08', 'in1')")
    with api.as_("evaluator") as c:
        low = c.get("/evaluation/2025/low-utilisation", params={"below_hours": 10}).json()
    assert low["below_hours"] == 10
    assert {i["key"]: i["threshold_hours"] for i in low["items"]} == {
        "inc1": 10, "nmr": 10, "xrd": 10}


@pytest.mark.parametrize(("score", "expected"), [
    (100, "优秀"), (90, "优秀"), (89.99, "良好"), (75, "良好"), (74.99, "合格"), (60, "合格"),
    (59.99, "不合格"), (0, "不合格")])
def test_grade_bounds_include_their_lower_end(score: float, expected: str) -> None:
    """>= 90 优秀, 75-90 良好, 60-75 合格, < 60 不合格 (the Ministry of Education's grades)."""
    assert grade(score, EvaluationRules()) == expected


@pytest.mark.parametrize(("score", "tier", "expected"), [
    (59.99, "service", 0), (60, "service", 1), (79.99, "voucher", 2), (94.99, "service", 4),
    (95, "voucher", 5), (100, "incubation", None)])
def test_stars_are_earned_at_each_threshold(score: float, tier: str,
                                            expected: int | None) -> None:
    """One star per default threshold reached (60, 70, 80, 90, 95); none for the pool."""
    assert stars(score, tier, EvaluationRules()) == expected


_COMPLETE = {**REGISTRY, **dict.fromkeys(REGISTRY_FIELDS, "x"), "fee_schedule": "500元/小时"}
"""A registry entry with every field the management score checks, and fees published."""


def _score(effective_h: float, external_h: float, up_share: float) -> dict[str, Any]:
    """An instrument's result over a whole year (target 1,200 h), on time, registry complete."""
    span = Span(since=START, lo=START, hi=START + timedelta(days=365), year_s=YEAR_S)
    figures = {"openness_ratio": None, "faults": 0}
    return score_instrument(figures, _COMPLETE,
                            seconds=(effective_h * 3600, external_h * 3600),
                            up_s=up_share * span.seconds, span=span, fault_since=None,
                            overdue=False, mark=None, rules=EvaluationRules())


def test_operation_and_sharing_are_capped_at_their_points() -> None:
    """2,400 h against full use at 1,200 h, 50 % open against the 10 % target: 40 and 20,
    not 80 and 100; management 30 + 10 x 0.5 availability."""
    scored = _score(2400, 1200, 0.5)
    assert (scored["operation"], scored["sharing"]) == (40, 20)
    assert scored["management"] == pytest.approx(35)


def test_management_uses_the_availability_unrounded() -> None:
    """Up 99.996 % of the year: 9.9996 of the 10 points for data flowing, not 10 (which the
    4-place 1.0 shown would give). 899.856 h: operation 29.9952; sharing 20; management
    39.9996: 89.9948, published 89.99, 良好 (from the rounded share: 89.9952 -> 90.00, 优秀)."""
    scored = _score(899.856, 899.856, 0.99996)
    assert scored["availability"] == 1.0  # shown to four places
    assert (round(scored["score"], 2), scored["grade"]) == (89.99, "良好")


def test_a_session_is_the_whole_interval_in_running() -> None:
    """With the default settings, running samples at 10:00, 10:10 and 10:22 and an idle one at
    10:30 are running from 10:00 to 10:30 (no gap exceeds the 15 min heartbeat timeout, so
    availability counts it all as running): one usage session of 30 min, not 10 + 8 min."""
    gap = timedelta(seconds=IngestConfig.model_fields["session_max_gap_s"].default)
    timeout = ApiSettings.model_fields["heartbeat_timeout_s"].default
    assert gap == timedelta(seconds=timeout)  # one rule for sessions and availability
    at = [datetime(2026, 3, 10, 10, m, tzinfo=SHANGHAI) for m in (0, 10, 22, 30)]
    rows: list[Any] = [("nmr", ts, state, None, "in1", None, "gw", 0, ts.isoformat())
                       for ts, state in zip(at, ["running"] * 3 + ["idle"], strict=True)]
    sessions = appended_sessions("nmr", rows, Before(), gap)
    assert [(s[1], s[2]) for s in sessions] == [(at[0], at[3])]


def _reported(since: datetime | None, effective_h: float) -> dict[str, Any]:
    """One unit's report of ``effective_h`` hours for 's1', monitored since ``since``."""
    return {"instrument_id": "s1", "name": "S1", "institution_id": "u", "institution_name": "U",
            "monitored_since": since,
            "reported_by": "lab_manager:1", "reported_at": START, "effective_hours": effective_h,
            "external_hours": 0}


def test_reported_hours_within_the_tolerance_are_consistent() -> None:
    """Measured 300 h: the tolerance is max(10 % x 300, 20 h) = 30 h, its end included."""
    measured = {"s1": {"effective_hours": 300.0, "external_hours": 0.0}}
    found = [compare([_reported(None, hours)], measured, year_start=START,
                     rules=EvaluationRules())[0]["finding"] for hours in (330, 330.01, 270, 269.99)]
    assert found == ["consistent", "over_reported", "consistent", "under_reported"]


def test_first_heard_a_day_into_the_year_is_monitored_all_year() -> None:
    """partly_monitored is for an instrument first heard from *more* than a day into the year:
    exactly a day in, its report is judged (300 h reported, 300 measured: consistent)."""
    measured = {"s1": {"effective_hours": 300.0, "external_hours": 0.0}}
    (row,) = compare([_reported(START + timedelta(days=1), 300)], measured, year_start=START,
                     rules=EvaluationRules())
    assert row["finding"] == "consistent"


@pytest.mark.parametrize("rules", [
    {"full_use_hours": 0}, {"operation_points": -10, "sharing_points": 70},
    {"excellent": 70, "good": 80}])
def test_rules_that_cannot_grade_are_refused(rules: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EvaluationRules.model_validate(rules)
