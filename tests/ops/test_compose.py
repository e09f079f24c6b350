"""docker-compose.yml: validated by the Compose client (`docker compose` v2 or docker-compose
1.29; there is no engine here, `config` needs none), and a structural check that the services,
mounts, ports and credentials fit together."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import yaml

from tests.ops.grafana import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
SERVICES = {"timescale", "mosquitto-passwd", "mosquitto", "migrate", "ingest-1", "ingest-2",
            "api", "prometheus", "grafana"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def _compose_command() -> list[str]:
    """The Compose client on this machine: the v2 plugin, else docker-compose (Debian package)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "no Compose client: install docker-compose (.ci/run does)"
    return [legacy]


def test_docker_compose_config() -> None:
    result = subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, **_env_example()},
    )
    assert result.returncode == 0, result.stderr


def test_compose_structure() -> None:
    compose = _compose()
    services: dict[str, dict[str, Any]] = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert "image" in service, name
        depends = service.get("depends_on", {})
        assert set(depends) <= SERVICES, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"

    # The instrushare services run the one image built from the Dockerfile.
    ours = {n for n, s in services.items() if s.get("build") == "."}
    assert ours == {"migrate", "ingest-1", "ingest-2", "api"}
    assert len({services[n]["image"] for n in ours}) == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile and 'ENTRYPOINT ["instrushare"]' in dockerfile
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["timescale"]["image"].startswith("timescale/timescaledb:")

    # Two workers in one share group, each with its own persistent session.
    workers = [services["ingest-1"], services["ingest-2"]]
    ids = {w["environment"]["INSTRUSHARE_WORKER_ID"] for w in workers}
    assert ids == {"ingest-1", "ingest-2"}
    for worker in workers:
        assert worker["command"][0] == "ingest"
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        url = worker["environment"]["MQTT_URL"]
        assert re.fullmatch(r"mqtt://ingest:\$\{INGEST_MQTT_PASSWORD[^}]*\}@mosquitto:1883", url)
        assert worker["environment"]["DATABASE_URL"].split("@")[1] == "timescale:5432/instrushare"
        # The share group is a required secret from .env, never the guessable default.
        assert worker["environment"]["INSTRUSHARE_SHARE_GROUP"].startswith(
            "${INSTRUSHARE_SHARE_GROUP:?")


def test_start_order_and_health_checks() -> None:
    services = _compose()["services"]
    # Over TCP: the init-time server listens on its socket only.
    check = services["timescale"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "pg_isready"] and _option(check, "-h") == "127.0.0.1"
    assert _option(check, "-d") == "instrushare" and _option(check, "-U") == "postgres"
    assert services["migrate"]["restart"].startswith("on-failure")
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["timescale"]["environment"]["TIMESCALEDB_TELEMETRY"] == "off"
    grafana_env = services["grafana"]["environment"]
    for name in ("GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES",
                 "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES"):
        assert grafana_env[name] == "false", name


def test_prometheus_targets_are_compose_services() -> None:
    compose = _compose()
    services = compose["services"]
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in prom["scrape_configs"]}
    ingest_ports = {s: _option(services[s]["command"], "--metrics-port")
                    for s in ("ingest-1", "ingest-2")}
    assert sorted(jobs["ingest"]) == sorted(f"{s}:{p}" for s, p in ingest_ports.items())
    assert jobs["api"] == [f"api:{_option(services['api']['command'], '--port')}"]
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert prom["rule_files"] == ["alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_grafana_datasources_reach_compose_services() -> None:
    services = _compose()["services"]
    config = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/instrushare.yml").read_text())
    urls = {ds["type"]: ds["url"] for ds in config["datasources"]}
    assert urls["grafana-postgresql-datasource"] == "timescale:5432"
    assert urls["prometheus"] == "http://prometheus:9090"
    assert "GRAFANA_DB_PASSWORD" in services["grafana"]["environment"]
    reader_script = (ROOT / "deploy/timescale/10-grafana-reader.sh").read_text()
    reader = next(ds for ds in config["datasources"] if ds["type"] != "prometheus")
    assert f"CREATE ROLE {reader['user']} LOGIN" in reader_script
    assert "pg_read_all_data" in reader_script


def test_secrets_come_from_env_and_are_documented() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    referenced = set(re.findall(r"\$\{(\w+)", text))
    documented = set(_env_example())
    assert referenced - {"INSTRUSHARE_IMAGE"} <= documented
    assert "INSTRUSHARE_IMAGE" in ENV_EXAMPLE.read_text()
    assert not re.search(r"PASSWORD:\s*[\"']?[\w-]+[\"']?\s*$", text, re.MULTILINE), (
        "a literal password in docker-compose.yml")
    docs = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    for name in documented:
        assert name in docs, f"docs/deploy.md does not mention {name}"


def test_every_secret_is_checked_before_the_database_starts() -> None:
    """An example or short value of any secret in .env stops the stack before it starts, as
    the broker's passwords do, not only the broker's."""
    services = _compose()["services"]
    checker = services["mosquitto-passwd"]["environment"]
    secrets = set(_env_example()) - {"COMPOSE_PROJECT_NAME", "INGEST_MQTT_PASSWORD"}
    assert set(checker["OTHER_SECRETS"].split()) == secrets
    assert secrets <= set(checker)
    assert services["timescale"]["depends_on"]["mosquitto-passwd"]["condition"] == \
        "service_completed_successfully"
    assert "timescale" in services["grafana"]["depends_on"]
    # Grafana, like Prometheus, only on the host's loopback: its admin runs any SQL it may
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]


def test_mosquitto_config_paths_are_mounted() -> None:
    services = _compose()["services"]
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    settings = dict(line.split(None, 1) for line in conf.splitlines()
                    if line.strip() and not line.startswith("#"))
    targets = {v.split(":")[1] for v in services["mosquitto"]["volumes"]}
    assert settings["acl_file"] in targets
    assert os.path.dirname(settings["password_file"]) in targets
    assert settings["persistence_location"].rstrip("/") in targets
    assert settings["allow_anonymous"] == "false"
    # A batch (1000 by default) must fit in the in-flight window, or ingest stalls.
    assert int(settings["max_inflight_messages"]) >= 1000
    assert int(settings["max_queued_messages"]) > 1000
    writer = services["mosquitto-passwd"]
    assert os.path.dirname(settings["password_file"]) in {
        v.split(":")[1] for v in writer["volumes"]}


def test_deployment_secrets_stay_out_of_the_image_build() -> None:
    """What .gitignore keeps out of the repository as a deployment secret (docs/deploy.md) is
    not sent to the Docker daemon with the build files either."""
    gitignore = (ROOT / ".gitignore").read_text()
    secrets = gitignore.split("# deployment secrets")[1].split("\n\n")[0].splitlines()[1:]
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines()}
    assert secrets and {s.rstrip("/") for s in secrets} <= ignored
