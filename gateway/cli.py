"""``instrushare gateway --config gateway.toml``: run one gateway until SIGINT or SIGTERM.

A second signal while it stops exits at once rather than wait for a broker that does not
answer: the messages stored stay in the outbox, a SQLite file, and go out after the next start.
The same signal again within a second is not a second one: ``timeout`` and supervisors that
signal the process and its group deliver one request twice.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from gateway.agent import GatewayAgent
from gateway.config import load_config
from gateway.errors import GatewayError, OutboxError
from instrushare.signals import ignoring_repeats

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
    on_signal = ignoring_repeats(_stopper(stop, settings.outbox_path))
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # restored however the run ends: a failed start included
        _run(GatewayAgent(settings), config, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopper(stop: threading.Event, outbox: Path) -> Callable[[int, FrameType | None], None]:
    """The handler of SIGINT and SIGTERM: the first sets ``stop``, a second exits at once."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            logger.info("received %s, stopping (a second signal exits at once)", name)
            stop.set()
            return
        logger.warning("received %s again, exiting at once: messages not yet delivered stay in"
                       " the outbox %s", name, outbox)
        # no unwinding, which could wait again on what the stop waits for; the code is the
        # shell's for a process ended by this signal
        os._exit(128 + signum)

    return on_signal


def _run(agent: GatewayAgent, config: Path, stop: threading.Event) -> None:
    """Start ``agent``, poll until ``stop`` is set, stop it; typer.Exit if it cannot start."""
    try:
        agent.start()
    except OutboxError as exc:
        typer.echo(f"error: {exc} (outbox_path in {config})", err=True)
        raise typer.Exit(2) from exc
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    settings = agent.config
    mqtt = settings.mqtt
    logger.info("gateway %s watching %d instrument(s), broker %s://%s:%d, topics %s/gw/%s/",
                settings.gateway_id, len(settings.instruments),
                "mqtts" if mqtt.tls else "mqtt", mqtt.host, mqtt.port, settings.topic_prefix,
                settings.gateway_id)
    try:
        agent.run_forever(stop)
    finally:
        agent.stop()
