"""Prometheus: the real server, with deploy/prometheus/prometheus.yml's jobs pointed at a real
ingest worker and the real API, reads back what those processes count.

Every metric the dashboards chart must exist in what Prometheus scraped, and every PromQL
expression in them must be accepted by the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from instrushare.settings import MqttAddress
from tests.ops import grafana
from tests.services import free_port, wait_for_port

DEPLOY_CONFIG = grafana.ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY_CONFIG.parent / "alerts.yml"
ALERT_TESTS = DEPLOY_CONFIG.parent / "alerts_test.yml"
CLI = [sys.executable, "-c", "from instrushare.cli import app; app()"]


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body[:1] == b"{" else body.decode()


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} after {timeout}s")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes with logs in tmp_path; each is stopped (SIGTERM, then SIGKILL) after."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[
        bytes
    ]:
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for log in logs:
        log.close()


def test_deploy_config_passes_promtool() -> None:
    assert shutil.which("promtool"), "install the Debian package prometheus (see .ci/run)"
    result = subprocess.run(["promtool", "check", "config", str(DEPLOY_CONFIG)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(ALERT_RULES) in result.stdout, "prometheus.yml does not load alerts.yml"


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(ALERT_RULES)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = _alert_rules()
    assert {r["alert"] for r in rules} >= {
        "IngestWorkerDown", "IngestStalled", "ApiDown", "ApiNotReady", "ApiServerErrors",
        "ApiSlow", "NoMessagesStored", "DeadLettersIncreasing", "IngestLagHigh",
        "IngestDatabaseRetries"}
    docs = (grafana.ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for rule in rules:  # what the on-call operator reads: what is wrong and what to do
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert f"`{rule['alert']}` ({rule['labels']['severity']})" in docs, rule["alert"]


def test_every_alert_rule_fires_in_its_unit_test() -> None:
    """promtool evaluates each rule on made-up series (alerts_test.yml): it fires where it
    should, with its annotations rendered, and stays quiet in the cases beside it."""
    result = subprocess.run(["promtool", "test", "rules", ALERT_TESTS.name],
                            cwd=ALERT_TESTS.parent, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [ALERT_RULES.name]
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    assert fired == {r["alert"] for r in _alert_rules()}


def _scrape_config(targets: dict[str, list[str]], path: Path) -> None:
    """deploy/prometheus.yml with each job's targets rewritten to local addresses."""
    config = yaml.safe_load(DEPLOY_CONFIG.read_text(encoding="utf-8"))
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        (static,) = job["static_configs"]
        local = targets[job["job_name"]]
        assert len(static["targets"]) == len(local), job["job_name"]
        static["targets"] = local
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    shutil.copy(ALERT_RULES, path.parent / "alerts.yml")  # rule_files are relative


def _metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not exposed"
    return float(match.group(1))


def test_prometheus_scrapes_ingest_and_api(
    processes: Callable[..., subprocess.Popen[bytes]], database_url: str, mqtt_url: str,
    topic_prefix: str, tmp_path: Path,
) -> None:
    assert shutil.which("prometheus"), "install the Debian package prometheus (see .ci/run)"
    env = {"DATABASE_URL": database_url, "MQTT_URL": mqtt_url,
           "INSTRUSHARE_TOPIC_PREFIX": topic_prefix}
    ingest_port, api_port, prom_port = free_port(), free_port(), free_port()
    processes("ingest", [*CLI, "ingest", "--metrics-port", str(ingest_port),
                         "--worker-id", f"ops-{uuid.uuid4().hex[:8]}"], env)
    processes("api", [*CLI, "api", "--host", "127.0.0.1", "--port", str(api_port)], env)
    wait_for_port(ingest_port, 20)
    wait_for_port(api_port, 20)

    # Two ingest targets in production; here both reach the one local worker, under two names.
    config = tmp_path / "prometheus.yml"
    _scrape_config({"ingest": [f"127.0.0.1:{ingest_port}", f"localhost:{ingest_port}"],
                    "api": [f"127.0.0.1:{api_port}"],
                    "prometheus": [f"127.0.0.1:{prom_port}"]}, config)
    base = f"http://127.0.0.1:{prom_port}"
    processes("prometheus", [
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ])
    wait_for_port(prom_port, 20)
    _wait_until(lambda: "Ready" in _get(f"{base}/-/ready"), 20, "prometheus not ready")

    # Give the ingest something to count: messages it must dead-letter.
    addr = MqttAddress.from_url(mqtt_url)
    _wait_until(lambda: _ingest_online(addr, topic_prefix), 20, "ingest not online")
    for n in range(3):
        publish.single(f"{topic_prefix}/gw/gw-ops/data/i-{n}", b"not json", qos=1,
                       hostname=addr.host, port=addr.port)
    metrics_url = f"http://127.0.0.1:{ingest_port}/metrics"
    _wait_until(lambda: _metric_value(_get(metrics_url),
                                      "instrushare_ingest_messages_received_total") >= 3,
                20, "ingest did not receive the messages")
    _get(f"http://127.0.0.1:{api_port}/healthz")
    truth = _metric_value(_get(metrics_url), "instrushare_ingest_messages_received_total")

    def query(expr: str) -> list[dict[str, Any]]:
        answer = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def scraped() -> bool:
        up = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
              for r in query("up")}
        got = query('max(instrushare_ingest_messages_received_total{job="ingest"})')
        return (len(up) == 4 and set(up.values()) == {"1"} and bool(got)
                and float(got[0]["value"][1]) == truth)

    _wait_until(scraped, 30, "prometheus did not scrape every target")
    api_series = query('instrushare_api_requests_total{job="api", route="/healthz"}')
    assert api_series and float(api_series[0]["value"][1]) >= 1

    # Every metric the dashboards chart is known to Prometheus, and every expression parses.
    metadata = _get(f"{base}/api/v1/metadata")["data"]
    for target in grafana.targets("prometheus"):
        expr = target.target["expr"].replace("$__rate_interval", "1m")
        query(expr)
        for name in set(re.findall(r"\b(instrushare_\w+)", expr)):
            family = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
            assert name in metadata or family in metadata, (target.panel_title, name)

    # The alert rules are loaded, evaluate without error, and use only metrics the code exports.
    groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
    alerts = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    assert alerts and all(r["health"] != "err" for r in alerts), alerts
    for rule in alerts:
        query(rule["query"])
        for name in set(re.findall(r"\b(instrushare_\w+)", rule["query"])):
            family = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
            assert name in metadata or family in metadata, (rule["name"], name)


def _ingest_online(addr: MqttAddress, prefix: str) -> bool:
    """True once an ingest worker has published its retained online state under the prefix."""
    seen = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if b"online" in msg.payload:
            seen.set()

    client.on_message = on_message
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"{prefix}/ingest/+/state", 1)
    client.connect(addr.host, addr.port)
    client.loop_start()
    try:
        return seen.wait(1.0)
    finally:
        client.loop_stop()
        client.disconnect()
