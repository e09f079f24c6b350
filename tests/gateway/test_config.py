"""Configuration files: the shipped example loads, bad files fail with clear messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gateway import ConfigError, GatewayConfig, load_config
from gateway.cli import gateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return path


MINIMAL = """
gateway_id = "gw1"
outbox_path = "box.sqlite"
[[instruments]]
id = "xrd1"
probe = { kind = "simulated" }
"""


def test_example_file_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.gateway_id == "gw-dlut-analysis-01"
    assert [i.id for i in config.instruments] == ["xrd-d8-advance", "sem-su8010",
                                                  "nmr-avance-600", "hplc-1290-infinity"]
    sem = config.instruments[1]
    assert (sem.probe.register_type, sem.probe.word_order, sem.probe.scale) == (
        "input", "little", 1000.0)
    assert config.instruments[0].detector.run_on_w == 400.0
    nmr = config.instruments[2].probe
    assert (nmr.kind, nmr.process, nmr.users["nmr-op1"]) == ("process", "topspin", "u-li")
    hplc = config.instruments[3].probe
    assert (hplc.kind, hplc.state_node, hplc.states, hplc.power_node) == (
        "opcua", "ns=3;s=HPLC.MachineryItemState.CurrentState", None, None)
    assert hplc.metrics == {"column_temp_c": "ns=3;s=HPLC.ColumnOven.Temperature"}
    assert config.outbox_path == EXAMPLE.parent / "gateway-outbox.sqlite"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.outbox_path == tmp_path / "box.sqlite"
    assert (config.sample_interval_s, config.publish_interval_s) == (60, 300)
    assert config.instruments[0].detector.model_dump() == {
        "off_below_w": 5.0, "run_on_w": 40.0, "run_off_w": 30.0, "debounce": 2}
    assert config.require_ingest_online and config.inflight_window == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway_id = ", "not valid TOML"),
        (MINIMAL.replace('"gw1"', '"gw/1"'), "gateway_id"),
        (MINIMAL.replace('"gw1"', '"ingest-1"'), "gateway_id: must not start with 'ingest-'"),
        (MINIMAL + "bogus = 1\n",
         r"\n  instruments.xrd1.bogus: unknown key \(misspelt, or in another"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "modbus"'), "needs host and address"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "simulated", host = "x"'),
         "modbus probes only"),
        (MINIMAL + 'detector = { run_on_w = 20.0 }\n', "off_below_w <= run_off_w <= run_on_w"),
        (MINIMAL.replace('outbox_path', 'outbox_max_age_s = 9999999\noutbox_path'),
         "outbox_max_age_s"),
        (MINIMAL.replace('outbox_path', 'sample_interval_s = inf\noutbox_path'),
         "sample_interval_s: Input should be a finite number"),
        (MINIMAL.replace('outbox_path', 'sample_interval_s = 0.001\noutbox_path'),
         "sample_interval_s: Input should be greater than or equal to 0.05"),
        (MINIMAL.replace('outbox_path', 'sample_interval_s = 601\noutbox_path'),
         "sample_interval_s: Input should be less than or equal to 600"),
        # named by its key, and reported beside the other problems of the file
        (MINIMAL.replace('outbox_path', 'mqtt_url = "mqtt://other:pw@h:1883"\noutbox_path')
         + 'detector = { run_on_w = 20.0 }\n',
         r"\n  mqtt_url: the MQTT user name \('other'\) must equal gateway_id \('gw1'\)"),
        (MINIMAL + '[[instruments]]\nid = "xrd1"\nprobe = { kind = "simulated" }\n',
         "\n  instruments: duplicate instrument ids: xrd1$"),
        (MINIMAL.replace('outbox_path', 'sample_interval_s = "1 min"\noutbox_path'),
         "sample_interval_s: Input should be a valid number"),
        (MINIMAL.replace('outbox_path', 'require_ingest_online = "maybe"\noutbox_path'),
         "require_ingest_online: Input should be a valid boolean"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "simulated", port = "502"x'),
         "not valid TOML"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "modbus", host = "m1", address = -1'),
         "instruments.xrd1.probe.address: Input should be greater than or equal to 0"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "modbus", host = "m1", address = 0,'
                                               ' scale = 0'),
         "instruments.xrd1.probe.scale: must not be 0"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "modbus", host = "", address = 0'),
         "instruments.xrd1.probe.host: must be a host name or IP address"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "modbus", host = "10.0.0.5:502",'
                                               ' address = 0'),
         "instruments.xrd1.probe.host: must be the host alone: its port goes in"
         " port"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "opcua", endpoint = "opc.tcp://",'
                                               ' power_node = "ns=2;s=P"'),
         r"instruments.xrd1.probe.endpoint: must be opc.tcp://host:port"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "gw.toml") in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("outbox_path", 'sample_interval_s = "5"\noutbox_path',
         "sample_interval_s: Input should be a valid number"),
        ("outbox_path", 'inflight_window = "10"\noutbox_path',
         "inflight_window: Input should be a valid integer"),
        ("outbox_path", 'require_ingest_online = "false"\noutbox_path',
         "require_ingest_online: Input should be a valid boolean"),
        ('kind = "simulated"', 'kind = "modbus", host = "m1", address = "4096"',
         "instruments.xrd1.probe.address: Input should be a valid integer"),
        ('{ kind = "simulated" }', '{ kind = "simulated" }\ndetector = { run_on_w = "400" }',
         "instruments.xrd1.detector.run_on_w: Input should be a valid number"),
    ],
)
def test_a_quoted_number_or_boolean_is_refused_not_converted(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        f"{path}: invalid configuration", f"  {message}",
        "  (numbers and true/false are written without quotes)"]


def test_a_boolean_is_no_number_and_an_integer_is_a_float(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"scale: Input should be a valid number$"):
        load_config(write(tmp_path, MINIMAL.replace(
            'kind = "simulated"', 'kind = "modbus", host = "m1", address = 0, scale = true')))
    config = load_config(write(tmp_path, MINIMAL.replace(
        "outbox_path", "sample_interval_s = 5\noutbox_path")))
    assert config.sample_interval_s == 5.0 and isinstance(config.sample_interval_s, float)


def test_errors_name_the_key_and_the_instrument_by_its_id(tmp_path: Path) -> None:
    text = MINIMAL.replace('gateway_id = "gw1"', 'gateway_id = "gw1"\nmqtt_url = "mqtt://h:x"')
    text += '[[instruments]]\nid = "sem1"\nprobe = { kind = "modbus" }\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "mqtt_url", "instruments.sem1.probe"]


def test_a_file_saved_with_a_byte_order_mark_reads_and_one_not_in_utf8_is_named(
    tmp_path: Path
) -> None:
    path = tmp_path / "gw.toml"
    path.write_bytes(("# 网关\n" + MINIMAL).encode("utf-8-sig"))
    assert load_config(path).gateway_id == "gw1"
    path.write_bytes(("# 网关\n" + MINIMAL).encode("gbk"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 2\)"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_cli_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(gateway)
    result = CliRunner().invoke(app, ["--config", str(write(tmp_path, "x = ["))])
    assert result.exit_code == 2
    assert "not valid TOML" in result.output


def test_cli_exits_2_on_an_outbox_in_a_missing_directory(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(gateway)
    config = write(tmp_path, MINIMAL.replace('"box.sqlite"', '"typo/box.sqlite"'))
    result = CliRunner().invoke(app, ["--config", str(config)])
    assert result.exit_code == 2
    assert "its directory does not exist" in result.output
    assert f"outbox_path in {config}" in result.output


def test_mqtt_credentials_come_from_the_url() -> None:
    config = GatewayConfig.model_validate({
        "gateway_id": "gw1", "mqtt_url": "mqtt://gw1:s%40cret@broker:8883",
        "outbox_path": "/tmp/x", "instruments": [{"id": "a", "probe": {"kind": "simulated"}}],
    })
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username, config.mqtt.password) == (
        "broker", 8883, "gw1", "s@cret")
