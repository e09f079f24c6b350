"""Stop signals as requests: one request is often delivered twice.

``timeout`` (without ``--foreground``), and any supervisor that signals a process and then its
process group, delivers the same signal twice within microseconds. A command that treats a
second signal as "exit at once, skip the clean stop" must take such a repeat as the first
request again, while a signal sent later (Ctrl-C pressed again) still counts.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], None]

REPEAT_WINDOW_S = 1.0
"""How soon after a signal the same signal counts as a repeat: well above a supervisor's
microseconds, below a person's second Ctrl-C after seeing that the stop hangs."""


def ignoring_repeats(handler: Handler, window_s: float = REPEAT_WINDOW_S) -> Handler:
    """``handler``, except for a signal repeating the last one it got within ``window_s``.

    Install the one result for every signal it serves: a different signal is never a repeat.
    """
    last: tuple[int, float] | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal last
        now = time.monotonic()
        if last is not None and last[0] == signum and now - last[1] < window_s:
            logger.debug("received %s again %.3f s later: the same request",
                          signal.Signals(signum).name, now - last[1])
            return
        last = (signum, now)
        handler(signum, frame)

    return on_signal
