"""Groups one instrument's samples and events into DataMessages of bounded size and age."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from gateway.outbox import Builder, Entry
from instrushare.protocol import (
    MAX_EVENTS_PER_MESSAGE,
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    DataMessage,
    Event,
    Sample,
    dumps,
)


class MessageBatch:
    """The open message of one instrument; ``close`` turns it into outbox builders."""

    __slots__ = ("age_s", "events", "instrument", "last_at", "samples", "topic")

    def __init__(self, *, instrument: str, topic: str) -> None:
        self.instrument = instrument
        self.topic = topic
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        self.age_s: float | None = None
        """Agent-clock time since the poll that opened the message (None: nothing pending),
        summed poll to poll without the steps back: a clock set back (an NTP correction)
        neither holds the message back nor makes it younger."""
        self.last_at: datetime | None = None

    def add(self, now: datetime, samples: list[Sample], events: list[Event]) -> None:
        """What one poll at ``now`` decided."""
        if self.age_s is not None and self.last_at is not None:
            self.age_s += max(0.0, (now - self.last_at).total_seconds())
        elif samples or events:
            self.age_s = 0.0
        self.last_at = now
        self.samples += samples
        self.events += events

    def due(self, *, interval_s: float, poll_s: float, max_samples: int) -> bool:
        """Closed by size, when events near the protocol limit, or by age: at the poll
        nearest to ``interval_s`` after the poll before its first sample (agent clock).

        While samples flow, that is one message every ``interval_s`` (every fifth poll of
        60 s for 300 s), and a wall clock that jitters against the poll schedule does not
        push a close to the next poll."""
        if self.age_s is None:
            return False
        return (
            self.age_s + poll_s >= interval_s - poll_s / 2
            or len(self.samples) >= max_samples
            or len(self.events) >= MAX_EVENTS_PER_MESSAGE // 2
        )

    def close(
        self, *, gateway: str, bd_seq: int, created_at: datetime, historical: bool, max_samples: int
    ) -> list[Builder]:
        """Builders for the pending content (several if it exceeds a limit); empties the batch."""
        if self.age_s is None:
            return []
        samples, events = self.samples, self.events
        self.samples, self.events, self.age_s = [], [], None
        base = {
            "gateway": gateway,
            "instrument": self.instrument,
            "bd_seq": bd_seq,
            "created_at": created_at.astimezone(UTC),
            "historical": historical,
        }
        builders: list[Builder] = []
        while samples or events:
            chunk_s, samples = samples[:max_samples], samples[max_samples:]
            chunk_e, events = events[:MAX_EVENTS_PER_MESSAGE], events[MAX_EVENTS_PER_MESSAGE:]
            builders += _builders(self.topic, base, chunk_s, chunk_e)
        return builders


def _builders(
    topic: str, base: dict[str, Any], samples: list[Sample], events: list[Event]
) -> list[Builder]:
    """One builder, or halves when the payload would exceed MAX_PAYLOAD_BYTES."""
    if not samples and not events:
        return []
    if len(samples) + len(events) > 1 and _may_be_too_big(samples, events):
        probe = _encode(topic, base, samples, events, 2**62)
        if len(probe.payload) > MAX_PAYLOAD_BYTES - 64:
            half_s, half_e = (len(samples) + 1) // 2, len(events) // 2
            return _builders(topic, base, samples[:half_s], events[:half_e]) + _builders(
                topic, base, samples[half_s:], events[half_e:]
            )
    return [partial(_encode, topic, base, samples, events)]


def _may_be_too_big(samples: list[Sample], events: list[Event]) -> bool:
    """A cheap upper bound of the encoded size, so most messages are encoded once only."""
    bound = 1000 + 250 * len(samples) + 1400 * len(events)
    bound += 120 * sum(len(s.metrics) for s in samples)
    return bound > MAX_PAYLOAD_BYTES // 2


def _encode(
    topic: str, base: dict[str, Any], samples: list[Sample], events: list[Event], seq: int
) -> Entry:
    message = DataMessage.model_construct(
        v=PROTOCOL_VERSION, seq=seq, samples=samples, events=events, **base
    )
    stamps = [s.ts for s in samples] + [e.ts for e in events]
    return Entry(topic=topic, payload=dumps(message), oldest=min(stamps).timestamp())
