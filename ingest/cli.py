"""``instrushare ingest``: settings from the environment and options, metrics, signals, run."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated, Any

import typer
from prometheus_client import REGISTRY, start_http_server

from instrushare.db import check_schema

from ._config import IngestConfig
from ._tuning import tune_process
from ._worker import IngestWorker
from .errors import BrokerRefusedError

logger = logging.getLogger("ingest")


def ingest(
    worker_id: Annotated[
        str | None, typer.Option(
            help="Stable worker name; names the persistent MQTT session."
                 " (INSTRUSHARE_WORKER_ID; default <hostname>-1)", show_default=False)
    ] = None,
    share_group: Annotated[
        str | None, typer.Option(
            help="Shared-subscription group the workers split data in."
                 " (INSTRUSHARE_SHARE_GROUP; default ingest)", show_default=False)
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(
            help="Serve Prometheus metrics on this port."
                 " (INSTRUSHARE_METRICS_PORT; default off)", show_default=False)
    ] = None,
    batch_max_messages: Annotated[
        int | None, typer.Option(
            help="Largest batch written in one transaction."
                 " (INSTRUSHARE_BATCH_MAX_MESSAGES; default 1000)", show_default=False)
    ] = None,
    batch_max_delay_s: Annotated[
        float | None, typer.Option(
            help="Seconds a message waits at most for its batch to fill."
                 " (INSTRUSHARE_BATCH_MAX_DELAY_S; default 0.2)", show_default=False)
    ] = None,
    retire: Annotated[
        bool, typer.Option(
            "--retire",
            help="Take this worker out of service: store what the broker queued for it, leave"
                 " the share group and exit (docs/deploy.md, 'Scaling out').")
    ] = False,
) -> None:
    """Store gateway data from MQTT in PostgreSQL (DATABASE_URL, MQTT_URL, INSTRUSHARE_*)."""
    options: dict[str, Any] = {
        "worker_id": worker_id,
        "share_group": share_group,
        "metrics_port": metrics_port,
        "batch_max_messages": batch_max_messages,
        "batch_max_delay_s": batch_max_delay_s,
    }
    config = IngestConfig(**{k: v for k, v in options.items() if v is not None})
    check_schema(config.database_url)  # not there, or not migrated: one line, at once
    if config.metrics_port is not None:
        try:
            start_http_server(config.metrics_port, registry=REGISTRY)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve metrics on :{config.metrics_port}:"
                                     f" {exc.strerror or exc}") from None
        logger.info("metrics on :%d/metrics", config.metrics_port)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker = IngestWorker(config, registry=REGISTRY, retire=retire)
    tune_process()
    try:
        worker.run(stop)
    except BrokerRefusedError as exc:
        typer.echo(f"instrushare ingest: {exc}", err=True)
        raise typer.Exit(1) from None
    if retire and worker.found_session is False:
        typer.echo(f"instrushare ingest --retire: the broker held no session for worker"
                   f" {config.worker_id!r}, so nothing was queued for it: is --worker-id the"
                   " retired worker's?", err=True)
        raise typer.Exit(1)
    if retire and not worker.retired:
        typer.echo(f"instrushare ingest --retire: stopped before worker {config.worker_id!r}"
                   " stored everything queued for it; its session stays: run the retire"
                   " again to finish", err=True)
        raise typer.Exit(1)
