"""``instrushare gateway --config gateway.toml``: run one gateway until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from gateway.agent import GatewayAgent
from gateway.config import load_config
from gateway.errors import GatewayError, OutboxError

logger = logging.getLogger("gateway")


def gateway(
    config: Annotated[Path, typer.Option("--config", "-c", help="Gateway TOML file.")],
) -> None:
    """Watch the configured instruments and publish their states to the broker.

    The TOML file is described in docs/gateway.md; examples/gateway.toml is a complete example.
    """
    try:
        settings = load_config(config)
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    agent = GatewayAgent(settings)
    try:
        agent.start()
    except OutboxError as exc:
        typer.echo(f"error: {exc} (outbox_path in {config})", err=True)
        raise typer.Exit(2) from exc
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    mqtt = settings.mqtt
    logger.info("gateway %s watching %d instrument(s), broker %s://%s:%d, topics %s/gw/%s/",
                settings.gateway_id, len(settings.instruments),
                "mqtts" if mqtt.tls else "mqtt", mqtt.host, mqtt.port, settings.topic_prefix,
                settings.gateway_id)
    try:
        agent.run_forever(stop)
    finally:
        agent.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
