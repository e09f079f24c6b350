"""Every endpoint: anonymous callers get 401, refused roles get 403, allowed roles pass."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from monitor_api.auth import Role
from tests.api.conftest import NEXT_WEEK, Api

ALL = {"admin", "manager", "evaluator", "user"}
ADMIN = {"admin"}
MANAGE = {"admin", "manager"}
READ = {"admin", "manager", "evaluator"}
EVAL = {"admin", "evaluator"}
USER = {"user"}

CSV = "id,name,institution_id\nnew-x,新仪器,uni-ac\n"

# (method, path, json body or csv text, roles allowed)
ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/institutions", None, ALL),
    ("GET", "/institutions/uni", None, ALL),
    ("POST", "/institutions", {"id": "n1", "name": "新单位"}, ADMIN),
    ("PATCH", "/institutions/uni", {"region": "沈阳"}, ADMIN),
    ("GET", "/instruments", None, ALL),
    ("GET", "/instruments/nmr", None, ALL),
    ("POST", "/instruments", {"id": "n2", "name": "x", "institution_id": "uni-ac"}, MANAGE),
    ("PATCH", "/instruments/nmr", {"location": "B101"}, MANAGE),
    ("POST", "/instruments/xrd/listing", None, ADMIN),
    ("DELETE", "/instruments/inc1/listing", None, ADMIN),
    ("POST", "/instruments/import", CSV, MANAGE),
    ("GET", "/compliance/overdue", None, READ),
    ("GET", "/users", None, READ),
    ("GET", "/users/in1", None, READ),
    ("POST", "/users", {"id": "u9", "name": "新用户", "institution_id": "uni"}, MANAGE),
    ("PATCH", "/users/in1", {"approved": True}, MANAGE),
    ("POST", "/tokens", {"role": "evaluator"}, ADMIN),
    ("GET", "/tokens", None, ADMIN),
    ("DELETE", "/tokens/{spare_token}", None, ADMIN),
    ("GET", "/status", None, ALL),
    ("GET", "/instruments/nmr/detail", None, ALL),
    ("GET", "/gateways", None, READ),
    ("GET", "/instruments/nmr/timeline?start=2026-03-10T00:00:00Z&end=2026-03-11T00:00:00Z",
     None, ALL),
    ("GET", "/instruments/nmr/power?start=2026-03-10T00:00:00Z&end=2026-03-11T00:00:00Z",
     None, ALL),
    ("GET", "/instruments/nmr/sessions?start=2026-03-10T00:00:00Z&end=2026-03-11T00:00:00Z",
     None, ALL),
    ("POST", "/certifications", {"user_id": "out1", "instrument_id": "nmr", "level": "self",
                                 "valid_from": "2026-01-01T00:00:00Z"}, MANAGE),
    ("POST", "/certifications/{cert}/revoke", None, MANAGE),
    ("GET", "/certifications", None, ALL),
    ("POST", "/bookings", {"instrument_id": "nmr", "kind": "assisted",
                           "start": f"{NEXT_WEEK}T09:00:00Z", "end": f"{NEXT_WEEK}T10:00:00Z"},
     USER),
    ("GET", "/bookings", None, ALL),
    ("GET", "/bookings/{booking}", None, ALL),
    ("POST", "/bookings/{booking}/approve", None, MANAGE),
    ("POST", "/bookings/{booking}/reject", None, MANAGE),
    ("POST", "/bookings/{booking}/complete", None, MANAGE),
    ("PUT", "/bookings/{booking}/service-record", {"fee_rmb": "10"}, MANAGE),
    ("POST", "/bookings/{booking}/rating", {"rating": 5}, USER),
    ("GET", "/bookings/{booking}/service-record", None, ALL),
    ("POST", "/bookings/{booking}/cancel", None, {"admin", "manager", "user"}),
    ("GET", "/reports/utilisation?start=2026-03-01&end=2026-03-31", None, READ),
    ("GET", "/reports/service-records?start=2026-03-01&end=2026-03-31", None, READ),
    ("GET", "/evaluation/2026/instruments", None, EVAL),
    ("GET", "/evaluation/2026/institutions", None, EVAL),
    ("GET", "/evaluation/2026/low-utilisation", None, EVAL),
    ("GET", "/evaluation/silent", None, EVAL),
    ("GET", "/evaluation/overdue-registrations?as_of=2026-03-01", None, EVAL),
    ("PUT", "/evaluation/2026/assessments/uni", {"mark": 80, "note": "良好"}, ADMIN),
    ("GET", "/evaluation/2026/assessments", None, EVAL),
    ("GET", "/evaluation/rules", None, EVAL),
    ("GET", "/evaluation/2026/duplicate-review?category=01", None, EVAL),
    ("DELETE", "/evaluation/2026/assessments/uni", None, ADMIN),
    ("PUT", "/evaluation/2025/publication", {"note": "审定"}, ADMIN),
    ("GET", "/evaluation/2025/publication", None, READ),
    ("GET", "/evaluation/publications", None, READ),
    ("GET", "/evaluation/2025/published/institutions", None, READ),
    ("GET", "/evaluation/2025/published/instruments", None, READ),
    ("DELETE", "/evaluation/2025/publication", None, ADMIN),
    ("POST", "/evaluation/2025/reported-use", "instrument_id,effective_hours\nnmr,1\n", MANAGE),
    ("GET", "/evaluation/2025/reported-use", None, READ),
    ("GET", "/users/me", None, ALL),
    ("GET", "/whoami", None, ALL),
    ("GET", "/categories", None, ALL),
]
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
"""Open to anyone: probes of load balancers and orchestrators."""
STREAMS = {("GET", "/status/stream")}
"""Never end by themselves: test_stream_needs_a_token."""


def _pattern(template: str) -> re.Pattern[str]:
    """``/bookings/{booking_id}/cancel`` as a pattern that matches ``/bookings/7/cancel``."""
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def test_every_endpoint_is_in_the_table(api: Api) -> None:
    """A new endpoint says here who may call it before it ships."""
    spec = httpx.get(f"{api.url}/openapi.json").json()
    untested = [
        (method, path)
        for path, operations in spec["paths"].items()
        for method in map(str.upper, operations)
        if (method, path) not in PUBLIC | STREAMS
        and not any(m == method and _pattern(path).match(t.split("?")[0])
                    for m, t, _, _ in ENDPOINTS)
    ]
    assert untested == []


def _send(api: Api, who: str | None, method: str, path: str, body: Any) -> int:
    client = api.client(api.tokens[who] if who else None)
    with client:
        if isinstance(body, str):
            r = client.request(method, path, content=body.encode(),
                               headers={"Content-Type": "text/csv"})
        else:
            r = client.request(method, path, json=body)
    if r.status_code in (401, 403):
        assert r.json()["error"] in ("unauthorized", "forbidden"), r.text
    return r.status_code


@pytest.fixture
def ids(api: Api) -> dict[str, str]:
    booking = api.sql(
        "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts) VALUES"
        " ('nmr', 'out1', 'assisted', '2026-12-01 09:00+08', '2026-12-01 10:00+08') RETURNING id"
    )[0][0]
    cert = api.sql(
        "INSERT INTO certification (user_id, instrument_id, level, valid_from)"
        " VALUES ('out1', 'nmr', 'self', now()) RETURNING id")[0][0]
    spare = api.sql("SELECT id FROM api_token ORDER BY id DESC LIMIT 1")[0][0]
    return {"booking": str(booking), "cert": str(cert), "spare_token": str(spare)}


def test_anonymous_and_refused_roles(api: Api, ids: dict[str, str]) -> None:
    api.tokens["spare"] = api.token(Role.EVALUATOR)
    ids["spare_token"] = str(api.sql("SELECT max(id) FROM api_token")[0][0])
    failures = []
    for method, template, body, allowed in ENDPOINTS:
        path = template.format(**ids)
        if (code := _send(api, None, method, path, body)) != 401:
            failures.append(f"anonymous {method} {path}: {code}")
        for role in sorted(ALL - allowed):
            if (code := _send(api, role, method, path, body)) != 403:
                failures.append(f"{role} {method} {path}: {code}")
    assert not failures, "\n".join(failures)


def test_allowed_roles_are_not_refused(api: Api, ids: dict[str, str]) -> None:
    failures = []
    for method, template, body, allowed in ENDPOINTS:
        if method == "DELETE":
            continue  # would revoke a token the other calls use
        path = template.format(**ids)
        for role in sorted(allowed):
            code = _send(api, role, method, path, body)
            if code in (401, 403) or code >= 500:
                failures.append(f"{role} {method} {path}: {code}")
    assert not failures, "\n".join(failures)


def test_stream_needs_a_token(api: Api) -> None:
    with api.client() as c:
        assert c.get("/status/stream").status_code == 401
    with api.client("isk_not-a-real-token") as c:
        r = c.get("/status")
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized", "message": "unknown or revoked token"}


def test_revoked_token_is_refused(api: Api) -> None:
    with api.as_("admin") as admin:
        made = admin.post("/tokens", json={"role": "evaluator"}).json()
        with api.client(made["token"]) as c:
            assert c.get("/status").status_code == 200
            assert admin.delete(f"/tokens/{made['id']}").status_code == 204
            assert c.get("/status").status_code == 401
    stored = api.sql("SELECT token_hash FROM api_token WHERE id = %s", (made["id"],))[0][0]
    assert made["token"].encode() not in bytes(stored)  # only the hash is kept


def test_the_tokens_issued_are_listed_without_themselves(api: Api) -> None:
    """So an admin finds which to revoke when one leaked or its holder left."""
    with api.as_("admin") as admin:
        made = admin.post("/tokens", json={"role": "user", "user_id": "in1",
                                           "label": "lab laptop"}).json()
        admin.delete(f"/tokens/{made['id']}")
        listed = admin.get("/tokens", params={"user_id": "in1"}).json()
        valid = admin.get("/tokens", params={"revoked": False, "limit": 1000}).json()["items"]
    newest = listed["items"][0]
    assert (newest["id"], newest["role"], newest["label"], newest["revoked_at"] is not None) == (
        made["id"], "user", "lab laptop", True)
    assert "token" not in newest and "token_hash" not in newest
    assert made["id"] not in {t["id"] for t in valid}
    assert {t["role"] for t in valid} == {"admin", "lab_manager", "evaluator", "user"}


@pytest.mark.parametrize(("body", "message"), [
    ({"role": "lab_manager"}, "a token of role lab_manager needs institution_id"),
    ({"role": "user"}, "a token of role user needs user_id"),
    ({"role": "user", "user_id": "in1", "institution_id": "other"},
     "institution_id does not apply to role user"),
    ({"role": "admin", "user_id": "in1"}, "user_id does not apply to role admin"),
    ({"role": "evaluator", "institution_id": "uni"},
     "institution_id does not apply to role evaluator"),
])
def test_a_token_carries_only_the_scope_its_role_has(
    api: Api, body: dict[str, str], message: str
) -> None:
    with api.as_("admin") as admin:
        r = admin.post("/tokens", json=body)
    assert r.status_code == 422 and message in r.json()["message"]


def test_lab_manager_scope(api: Api) -> None:
    with api.as_("other_manager") as other:
        assert other.patch("/instruments/nmr", json={"location": "x"}).status_code == 403
        assert other.post("/instruments", json={"id": "zz", "name": "z",
                                                "institution_id": "uni"}).status_code == 403
        assert other.patch("/users/in1", json={"approved": False}).status_code == 404
        assert other.patch("/users/out1", json={"institution_id": "uni"}).status_code == 403
        assert other.post("/users", json={"id": "zz", "name": "z", "institution_id": "uni"}
                          ).status_code == 403
        assert other.get("/users/in1").status_code == 404
        assert other.get("/instruments/nmr/sessions", params={
            "start": "2026-03-10T00:00:00Z", "end": "2026-03-11T00:00:00Z"}).status_code == 403
        assert {u["id"] for u in other.get("/users").json()["items"]} == {"out1", "new1"}
        assert other.post("/certifications", json={
            "user_id": "out1", "instrument_id": "nmr", "level": "self",
            "valid_from": "2026-01-01T00:00:00Z"}).status_code == 403
    with api.as_("manager") as mgr:  # the sub-unit belongs to the manager's institution
        assert mgr.patch("/instruments/nmr", json={"location": "B101"}).status_code == 200


def test_lab_manager_lists_only_their_institutions_instruments(api: Api) -> None:
    with api.as_("other_manager") as other:
        listed = other.get("/instruments").json()
        assert ([i["id"] for i in listed["items"]], listed["total"]) == (["xrd"], 1)
        assert other.get("/instruments", params={"institution_id": "uni-ac"}).json()[
            "total"] == 0
        assert other.get("/instruments/nmr").status_code == 403
        assert other.get("/instruments/xrd").status_code == 200
    with api.as_("manager") as mgr:  # the sub-unit's instruments are the manager's
        assert [i["id"] for i in mgr.get("/instruments").json()["items"]] == ["nmr", "sem"]
        assert [i["id"] for i in mgr.get("/instruments", params={
            "institution_id": "uni"}).json()["items"]] == ["nmr", "sem"]  # sub-unit included
    for who in ("admin", "evaluator", "user"):  # the registry stays public to the others
        with api.as_(who) as c:
            assert c.get("/instruments").json()["total"] == 4, who
        with api.as_(who) as c:
            assert c.get("/instruments/nmr").status_code == 200, who
