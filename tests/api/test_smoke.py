import asyncio

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from monitor_api import ApiSettings, cli
from monitor_api.app import create_app
from monitor_api.exports import XLSX_TYPE
from tests.api.conftest import Api
from tests.api.test_evaluation import SETUP as EVALUATION_SETUP


def test_health(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        for probe in ("/healthz", "/readyz"):  # as load balancers probe
            head = c.head(probe)
            assert (head.status_code, head.content) == (200, b"")


def test_metrics_endpoint_counts_requests(api: Api) -> None:
    with api.as_("admin") as c:
        assert c.get("/bookings/12345").status_code == 404
        text = c.get("/metrics").text
    assert 'instrushare_api_requests_total{method="GET",route="/bookings/{booking_id}",' \
        'status="404"} 1.0' in text
    assert "instrushare_api_pool_size" in text


def test_an_unexpected_error_is_answered_and_counted_as_a_500(database_url: str) -> None:
    """An exception no handler knows still counts in the request metrics: a 5xx alert sees
    crashes, not only the errors the API raises on purpose."""
    app = create_app(ApiSettings(database_url=database_url))

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a defect")

    async def run() -> tuple[httpx.Response, str]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://api") as client:
            return await client.get("/crash"), (await client.get("/metrics")).text

    crashed, text = asyncio.run(run())
    assert crashed.status_code == 500
    assert 'instrushare_api_requests_total{method="GET",route="/crash",status="500"} 1.0' in text
    assert 'instrushare_api_request_seconds_count{method="GET",route="/crash"} 1.0' in text


def test_cli_creates_a_working_admin_token(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", api.database_url)
    cli.api(create_admin_token=True, label="first")
    token = capsys.readouterr().out.strip()
    assert token.startswith("isk_")
    with api.client(token) as c:
        assert c.post("/institutions", json={"id": "x1", "name": "X"}).status_code == 201


def test_openapi_has_examples_and_security(api: Api) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert spec["components"]["schemas"]["InstrumentIn"]["examples"][0]["id"] == "nmr-600"


EVALUATION_ROUTES: list[tuple[str, dict[str, str | int]]] = [
    ("/evaluation/2025/instruments", {}),
    ("/evaluation/2025/institutions", {}),
    ("/evaluation/2025/low-utilisation", {}),
    ("/evaluation/2025/duplicate-review", {"category": "01"}),
    ("/evaluation/2025/published/institutions", {}),  # as published just before
    ("/evaluation/2025/published/instruments", {}),
    ("/evaluation/2025/reported-use", {}),
    ("/evaluation/silent", {"days": 30}),
    ("/evaluation/overdue-registrations", {"as_of": "2025-03-31"}),  # not yet networked
    ("/evaluation/overdue-registrations", {"as_of": "2025-12-31"}),  # networked late
]


def test_evaluation_bodies_match_their_openapi_schema(api: Api) -> None:
    for statement in EVALUATION_SETUP:
        api.sql(statement)
    api.sql("UPDATE instrument SET networked_on = '2025-06-30' WHERE id = 'xrd'")
    api.sql("INSERT INTO instrument_status (instrument_id, gateway_id, state, since, last_ts)"
            " VALUES ('sem', 'gw1', 'idle', now() - interval '60 days',"
            " now() - interval '60 days')")
    api.sql("INSERT INTO reported_use (year, instrument_id, effective_hours, reported_by)"
            " VALUES (2025, 'nmr', 500, 'admin:1')")
    with api.as_("admin") as admin:
        assert admin.put("/evaluation/2025/publication", json={}).status_code == 200
    spec = httpx.get(f"{api.url}/openapi.json").json()
    with api.as_("evaluator") as c:
        for path, params in EVALUATION_ROUTES:
            response = c.get(path, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["items"], path  # the item schema is exercised too
            template = path.replace("2025", "{year}")
            content = spec["paths"][template]["get"]["responses"]["200"]["content"]
            schema = {**content["application/json"]["schema"],
                      "components": spec["components"]}
            errors = [f"{path} {list(e.absolute_path)}: {e.message}" for e in
                      Draft202012Validator(schema, format_checker=FormatChecker())
                      .iter_errors(body)]
            assert not errors, errors
            assert {"text/csv", XLSX_TYPE} <= content.keys()
            drifted = {**body, "items": [{**body["items"][0], "new_key": 1}]}
            assert not Draft202012Validator(schema).is_valid(drifted), path


def test_a_json_endpoint_sent_another_content_type_says_so(api: Api) -> None:
    with api.as_("admin") as c:
        r = c.post("/institutions", content=b"id=x&name=y",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        missing = c.post("/institutions", json=None)
        # JSON text, but not said to be JSON: no Content-Type, or one merely resembling it
        unsaid = [c.post("/institutions", content=b'{"id": "x", "name": "y"}', headers=headers)
                  for headers in ({}, {"Content-Type": "application/jsonx"})]
    for response in (r, *unsaid):
        assert (response.status_code, response.json()["error"]) == (
            415, "unsupported_media_type")
        assert "the body must be JSON" in response.json()["message"]
    assert unsaid[0].json()["message"].endswith("this request's Content-Type is missing")
    assert missing.status_code == 422  # no body at all: a request to complete, not a type


def test_the_request_examples_run_in_order(api: Api) -> None:
    """Each OpenAPI example names only what an example before it creates."""
    schemas = httpx.get(f"{api.url}/openapi.json").json()["components"]["schemas"]
    with api.as_("admin") as c:
        for path, schema in (("/institutions", "InstitutionIn"), ("/instruments", "InstrumentIn"),
                             ("/users", "UserIn"), ("/certifications", "CertificationIn"),
                             ("/tokens", "TokenIn")):
            for example in schemas[schema]["examples"]:
                r = c.post(path, json=example)
                assert r.status_code == 201, f"{path}: {r.text}"
