import httpx
import pytest

from monitor_api import cli
from tests.api.conftest import Api


def test_health(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}


def test_metrics_endpoint_counts_requests(api: Api) -> None:
    with api.as_("admin") as c:
        assert c.get("/bookings/12345").status_code == 404
        text = c.get("/metrics").text
    assert 'instrushare_api_requests_total{method="GET",route="/bookings/{booking_id}",' \
        'status="404"} 1.0' in text
    assert "instrushare_api_pool_size" in text


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
