"""``instrushare sim``: run a simulated fleet through real gateway agents."""

from __future__ import annotations

import logging
import resource
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from device_sim.fleet import ANONYMOUS_SHARE
from device_sim.registry import register_bookings, register_certifications, register_fleet
from device_sim.runner import Simulation, SimulationSpec
from device_sim.truth import write_truth
from gateway import OutboxError
from instrushare.protocol import MAX_FUTURE_SKEW, MAX_PAST_AGE, MAX_SAMPLE_INTERVAL_S
from instrushare.settings import FleetSettings


def sim(
    instruments: Annotated[
        int, typer.Option(min=1, max=20_000, help="Number of instruments (one gateway each).")
    ] = 50,
    days: Annotated[float, typer.Option(min=0.001, max=366, help="Simulated days.")] = 1.0,
    speed: Annotated[
        float,
        typer.Option(min=0, max=1e6,
                     help="Simulated seconds per real second; 0 = as fast as possible."),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same fleet and same days.")] = 1,
    tick: Annotated[
        int, typer.Option(min=1, max=MAX_SAMPLE_INTERVAL_S,
                          help="Sample interval in simulated seconds.")
    ] = 60,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="Simulated start; without a zone, in this computer's (default: midnight in"
            " Asia/Shanghai `days` days before today, rounded up to whole days, at least one;"
            " now when speed is 1)."
        ),
    ] = None,
    truth: Annotated[Path, typer.Option(help="Where to write the ground truth JSON.")] = Path(
        "var/sim/truth.json"
    ),
    state_dir: Annotated[
        Path, typer.Option(help="Gateway outboxes live here; a later run on it sends what they"
                                " kept.")
    ] = Path("var/sim/outbox"),
    id_prefix: Annotated[
        str, typer.Option(help="Put before every id: sims run at once on one broker need"
                               " different gateway ids (MQTT client ids), whatever the topic"
                               " prefix.")
    ] = "",
    register: Annotated[
        bool, typer.Option(
            help="Upsert the fleet into the registry at DATABASE_URL and record its"
            " certifications and bookings first."
        )
    ] = True,
    drain_timeout: Annotated[
        float, typer.Option(min=0, max=86_400,
                            help="Seconds to wait at the end for every outbox to empty"
                                 " (a stop signal ends the wait).")
    ] = 300,
    anonymous_share: Annotated[
        float, typer.Option(min=0, max=1,
                            help="Share of instruments whose gateway sees power only and"
                                 " reports no user (0-1): their sessions take the user of"
                                 " the booking they start in.")
    ] = ANONYMOUS_SHARE,
) -> None:
    """Simulate instruments and their users; gateways publish to MQTT_URL.

    Topics under INSTRUSHARE_TOPIC_PREFIX; the fleet goes into the registry at DATABASE_URL.
    Its data reaches the database through a running `instrushare ingest`: without one the
    end waits --drain-timeout for it, then keeps the data in --state-dir for the next run.
    """
    logging.getLogger("gateway").setLevel(logging.WARNING)  # a line per agent otherwise
    settings = FleetSettings()
    try:
        spec = SimulationSpec(
            instruments=instruments,
            days=days,
            seed=seed,
            tick_s=tick,
            start=start.astimezone() if start else None,
            speed=speed or None,
            id_prefix=id_prefix,
            anonymous_share=anonymous_share,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _allow_open_files(instruments)
    try:
        simulation = Simulation(spec, mqtt_url=settings.mqtt_url,
                                topic_prefix=settings.topic_prefix, state_dir=state_dir)
    except OSError as exc:  # a file in the way, no permission
        raise typer.BadParameter(f"cannot keep the outboxes in {state_dir}:"
                                 f" {exc.strerror or exc}", param_hint="--state-dir") from exc
    _check_the_ingest_takes_it(simulation, now=datetime.now(UTC))
    try:  # before the registry is written: a path that cannot take it stops the run at once
        write_truth(truth, simulation.truth())
    except OSError as exc:
        raise typer.BadParameter(f"cannot write the ground truth to {truth}:"
                                 f" {exc.strerror or exc}", param_hint="--truth") from exc
    if register:
        register_fleet(settings.database_url, simulation.fleet)
        register_certifications(settings.database_url, simulation.certifications)
        register_bookings(settings.database_url, simulation.bookings)
    typer.echo(
        f"{instruments} instruments, {simulation.start:%Y-%m-%d %H:%M} to "
        f"{simulation.end:%Y-%m-%d %H:%M} UTC; ground truth in {truth}"
    )
    stop = threading.Event()  # SIGTERM or SIGINT (also when started in the background)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ) as progress:
            result = simulation.run(
                on_tick=_show_ticks(progress, simulation.ticks),
                on_drain=_show_delivery(progress),
                drain_timeout=drain_timeout,
                should_stop=stop.is_set,
            )
    except OutboxError as exc:  # such as one that a simulation running on --state-dir holds
        typer.echo(f"error: {exc} (--state-dir {simulation.state_dir})", err=True)
        raise typer.Exit(2) from exc
    if result.ticks < simulation.ticks:  # ticks 0 to simulation.ticks: a sample each
        at = simulation.start + timedelta(seconds=result.ticks * tick)
        reached = ("before its first tick" if result.ticks < 0 else
                   f"at tick {result.ticks} of {simulation.ticks} ({at:%Y-%m-%d %H:%M} UTC"
                   " simulated)")
        typer.echo(f"stopped {reached}; the ground truth covers the whole run planned")
    typer.echo(
        f"{result.messages} messages in {result.wall_s:.1f} s, {result.dropped} dropped, "
        + ("all delivered" if result.drained else
           f"NOT all delivered: {result.unsent} kept in the outboxes in {simulation.state_dir}"
           " for a later run with that --state-dir")
    )
    if not result.drained:
        raise typer.Exit(1)


FILES_PER_GATEWAY = 3
"""Files one simulated gateway keeps open: its outbox, the outbox's -wal file and its MQTT
connection (docs/gateway.md, "Publishing")."""
FILES_SPARE = 64
"""Open files of the process itself: libraries, the database connection, the terminal."""


def _allow_open_files(instruments: int) -> None:
    """Raise the process's limit on open files (``ulimit -n``, often 1024) to what the fleet
    needs, as far as the hard limit lets it; refuse a fleet beyond that, which would
    otherwise fail midway through opening the outboxes."""
    needed = instruments * FILES_PER_GATEWAY + FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise typer.BadParameter(
            f"{instruments} instruments need about {needed} open files, and this process may"
            f" open at most {hard} (ulimit -Hn): raise that limit, or simulate at most"
            f" {max(0, hard - FILES_SPARE) // FILES_PER_GATEWAY}", param_hint="--instruments")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _show_ticks(progress: Progress, total: int) -> Callable[[int, int], None]:
    task = progress.add_task("simulating", total=total, count=f"0/{total} ticks")
    return lambda done, _total: progress.update(task, completed=done,
                                                count=f"{done}/{total} ticks")


def _show_delivery(progress: Progress) -> Callable[[int], None]:
    """The messages left in the outboxes, falling as the platform takes them: without it, a
    long wait at the end (no ingest online) looks like a hang."""
    task = progress.add_task("delivering", total=None, count="", visible=False)
    first: int | None = None

    def show(left: int) -> None:
        nonlocal first
        first = left if first is None else first
        progress.update(task, completed=first - left, total=first, visible=True,
                        count=f"{left} messages left in the outboxes")

    return show


def _check_the_ingest_takes_it(simulation: Simulation, *, now: datetime) -> None:
    """Refuse a run whose data the ingest would dead-letter: older than it accepts, or ahead
    of its clock, when sent. Data is sent as it is simulated, at ``--speed``'s pace (flat out:
    at once), so the simulated clock drifts from the real one at a steady rate and is furthest
    behind or ahead of it at the start or at the end."""
    start, end, speed = simulation.start, simulation.end, simulation.spec.speed
    finish = now + ((end - start) / speed if speed else timedelta(0))  # the last tick, real
    if start < now - MAX_PAST_AGE:
        raise typer.BadParameter(
            f"the run starts {start:%Y-%m-%d %H:%M} UTC, more than {MAX_PAST_AGE.days} days"
            " ago: the ingest refuses data that old", param_hint="--start/--days")
    if end < finish - MAX_PAST_AGE:
        raise typer.BadParameter(
            f"at --speed {speed:g}, the run would report its end, {end:%Y-%m-%d %H:%M} UTC,"
            f" at {finish:%Y-%m-%d %H:%M} UTC, more than {MAX_PAST_AGE.days} days later: the"
            " ingest refuses data that old; give a higher --speed, or fewer --days",
            param_hint="--speed")
    if start > now + MAX_FUTURE_SKEW:
        raise typer.BadParameter(
            f"the run starts {start:%Y-%m-%d %H:%M} UTC, ahead of the clock: the ingest"
            " refuses that; start earlier", param_hint="--start")
    if end > finish + MAX_FUTURE_SKEW:
        pace = f"at --speed {speed:g}" if speed else "run as fast as possible"
        raise typer.BadParameter(
            f"{pace}, it would report up to {end:%Y-%m-%d %H:%M} UTC by"
            f" {finish:%Y-%m-%d %H:%M} UTC, ahead of the clock: the ingest refuses that;"
            f" start earlier, or give {'a lower --speed' if speed else '--speed'}",
            param_hint="--start/--days")
