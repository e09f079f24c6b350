"""Reads an agent's probes so that one that hangs holds up neither the other instruments nor
the gateway's exit.

A probe that talks to an instrument (a meter, a server, the process table) can block past its
own timeouts: a device that stops answering mid-reply, a process table entry stuck in the
kernel. Each such probe is read in a daemon thread of its own, started at every poll and
waited for until a deadline; a read still running at the next poll is not started again, and
its result, late, is dropped. A ``SimulatedProbe`` only returns what it was set to, so it is
read in the caller's thread: the fleet simulator runs thousands of agents in one process.
"""

from __future__ import annotations

import threading
import time

from gateway.errors import ProbeError
from gateway.probes import Probe, Reading, SimulatedProbe, check_reading


class ProbeReader:
    """One probe's reads: ``begin`` at each poll, ``wait`` for the answer, then ``result``."""

    def __init__(self, probe: Probe, instrument: str) -> None:
        self.probe = probe
        self.instrument = instrument
        self._threaded = not isinstance(probe, SimulatedProbe)
        self._done = threading.Event()
        self._done.set()
        self._result: Reading | ProbeError = ProbeError(f"{probe!r}: not read yet")
        self._since = 0.0
        self._late = False
        """The read running was begun at an earlier poll: its result is not this poll's."""

    @property
    def busy(self) -> bool:
        """A read is running (begun at this poll or, hung, at an earlier one)."""
        return not self._done.is_set()

    def begin(self) -> None:
        """Start a read, unless the previous one is still running."""
        self._late = self.busy
        if self._late:
            return
        self._since = time.monotonic()
        if not self._threaded:
            self._run()
            return
        self._done.clear()
        try:
            threading.Thread(target=self._run, name=f"probe-{self.instrument}",
                             daemon=True).start()
        except RuntimeError as exc:  # out of threads or memory: tried again at the next poll
            self._result = ProbeError(f"{self.probe!r}: cannot start a thread to read it: {exc}",
                                      instrument=self.instrument)
            self._done.set()

    def wait(self, timeout: float) -> bool:
        """Whether this poll's read has ended (or none was begun), waiting at most
        ``timeout`` seconds."""
        return self._late or self._done.wait(timeout)

    def result(self) -> Reading:
        """This poll's reading; ProbeError if it failed, has not ended or was not begun."""
        if self._late or self.busy:
            raise ProbeError(f"{self.probe!r}: no answer for {time.monotonic() - self._since:.0f}"
                             " s; not read again until it answers", instrument=self.instrument)
        if isinstance(self._result, ProbeError):
            raise self._result
        return self._result

    def _run(self) -> None:
        try:
            self._result = check_reading(self.probe.read())
        except ProbeError as exc:
            self._result = exc
        except Exception as exc:  # a bug in a probe must not stop the other instruments
            self._result = ProbeError(f"{self.probe!r} failed: {type(exc).__name__}: {exc}",
                                      instrument=self.instrument)
        finally:
            self._done.set()

