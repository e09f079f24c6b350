"""docs/metrics.md written out in plain Python, one session at a time: the ground truth the
report SQL is checked against on randomised data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

PAD = timedelta(days=1)  # the no-show check sees sessions up to a day beyond the period
BOOKING_LOOKBACK = timedelta(days=31)
COUNTED = ("approved", "completed")
"""Bookings whose windows cover use; a void one counts as a booking and a no-show."""


@dataclass(frozen=True)
class Instrument:
    id: str
    institution_id: str
    warmup_s: int = 0
    cooldown_s: int = 0
    min_session_s: int = 0


@dataclass(frozen=True)
class User:
    id: str
    institution_id: str | None
    organisation: str
    approved: bool


@dataclass(frozen=True)
class Session:
    instrument_id: str
    start: datetime
    end: datetime | None
    last: datetime
    user_id: str | None


@dataclass(frozen=True)
class Booking:
    instrument_id: str
    user_id: str
    start: datetime
    end: datetime
    status: str
    kind: str = "self"


@dataclass(frozen=True)
class Certification:
    user_id: str
    instrument_id: str
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None


@dataclass
class World:
    parents: dict[str, str | None]
    instruments: list[Instrument]
    users: list[User]
    sessions: list[Session] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)
    certifications: list[Certification] = field(default_factory=list)
    heard: dict[str, datetime] = field(default_factory=dict)
    """Each instrument's latest sample; no-shows count only up to it. None: never heard."""

    def root(self, institution_id: str | None) -> str | None:
        while institution_id is not None and self.parents[institution_id] is not None:
            institution_id = self.parents[institution_id]
        return institution_id


Interval = tuple[datetime, datetime]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Non-empty intervals merged into sorted, disjoint, non-touching ones."""
    merged: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def overlap_s(xs: list[Interval], ys: list[Interval]) -> float:
    """Length of the intersection of two disjoint interval lists, in seconds."""
    total = timedelta()
    for a, b in xs:
        for c, d in ys:
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                total += hi - lo
    return total.total_seconds()


def _end(s: Session) -> datetime:
    """An open session ends at its latest running sample."""
    return s.end if s.end is not None else s.last


def _certified(world: World, s: Session, user_id: str) -> bool:
    for c in world.certifications:
        if c.user_id != user_id or c.instrument_id != s.instrument_id:
            continue
        ends = [t for t in (c.valid_until, c.revoked_at) if t is not None]
        if c.valid_from <= s.start and (not ends or s.start < min(ends)):
            return True
    return False


class Window(Protocol):
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


W = TypeVar("W", bound=Window)


def nearest_holding(windows: Iterable[W], at: datetime, grace: timedelta) -> W | None:
    """Of the booking ``windows`` (one instrument's, those that attribute), the one whose
    window widened by ``grace`` holds ``at`` and is nearest to it; on a tie the later one
    (docs/metrics.md, "Users by booking")."""
    held = [w for w in windows if w.start - grace <= at < w.end + grace]
    return min(held, default=None, key=lambda w: (
        max(w.start - at, at - w.end, timedelta()), -w.start.timestamp()))


def booking_of(world: World, s: Session, grace: timedelta) -> Booking | None:
    """The approved or completed booking whose user the session takes when none was
    reported."""
    return nearest_holding((b for b in world.bookings if b.instrument_id == s.instrument_id
                            and b.status in COUNTED), s.start, grace)


@dataclass
class Figures:
    """The raw sums and sets the report query returns for one instrument."""

    sessions: int = 0
    effective_s: float = 0.0
    running_s: float = 0.0
    external_s: float = 0.0
    uncertified_sessions: int = 0
    uncertified_s: float = 0.0
    unattributed_s: float = 0.0
    booked_s: float = 0.0
    """Running time (margins left out) inside a booking window."""
    bookings: int = 0
    no_shows: int = 0
    outside_users: set[str] = field(default_factory=set)
    outside_orgs: set[str] = field(default_factory=set)


def expected(
    world: World, lo: datetime, hi: datetime, grace: timedelta, now: datetime
) -> dict[str, Figures]:
    """Figures per instrument for the period [lo, hi)."""
    users = {u.id: u for u in world.users}
    out: dict[str, Figures] = {}
    for inst in world.instruments:
        warm, cool = timedelta(seconds=inst.warmup_s), timedelta(seconds=inst.cooldown_s)
        owner = world.root(inst.institution_id)
        fig = out[inst.id] = Figures()
        used: list[Interval] = []
        raw: list[Interval] = []
        own = sorted((s for s in world.sessions if s.instrument_id == inst.id
                      and _end(s) - s.start >= timedelta(seconds=inst.min_session_s)),
                     key=lambda s: s.start)  # noise left out
        for k, s in enumerate(own):
            end = _end(s)
            if not (s.start < hi + PAD and end > lo - PAD):
                continue
            raw.append((s.start, end))
            # margins stop at the neighbours; the previous cool-down comes before a warm-up
            a = s.start - warm
            if k > 0:
                a = max(a, min(_end(own[k - 1]) + cool, s.start))
            b = end + cool
            if k + 1 < len(own):
                b = max(min(b, own[k + 1].start), end)
            a, b = max(a, lo), min(b, hi)
            if b <= a:
                continue
            secs = (b - a).total_seconds()
            ra, rb = max(s.start, lo), min(end, hi)
            if rb > ra:  # running time, without the margins
                used.append((ra, rb))
                fig.running_s += (rb - ra).total_seconds()
            fig.sessions += 1
            fig.effective_s += secs
            # the reported user, else the booking's; only who ran it themselves needs a
            # certification
            booking = booking_of(world, s, grace) if s.user_id is None else None
            user_id = booking.user_id if booking is not None else s.user_id
            operated = s.user_id is not None or (booking is not None and booking.kind == "self")
            if user_id is None:
                fig.unattributed_s += secs
            elif operated and not _certified(world, s, user_id):
                fig.uncertified_sessions += 1
                fig.uncertified_s += secs
            user = users.get(user_id) if user_id is not None else None
            if user is not None and user.approved and world.root(user.institution_id) != owner:
                fig.external_s += secs
                fig.outside_users.add(user.id)
                fig.outside_orgs.add(world.root(user.institution_id)
                                     or (f"org:{user.organisation}" if user.organisation
                                         else f"user:{user.id}"))
        windows = [w for w in world.bookings if w.instrument_id == inst.id
                   and w.status in COUNTED and w.start < hi and w.end > lo - BOOKING_LOOKBACK]
        fig.booked_s = overlap_s(union(used), union((w.start, w.end) for w in windows))
        raw_union = union(raw)
        for w in windows:
            if w.start < lo:
                continue
            fig.bookings += 1
            seen = overlap_s(raw_union, [(w.start - grace, w.end + grace)]) > 0
            heard = world.heard.get(inst.id)
            if heard is not None and w.end + grace <= min(now, heard) and not seen:
                fig.no_shows += 1
        void = [w for w in world.bookings if w.instrument_id == inst.id
                and w.status == "void" and lo <= w.start < hi]
        fig.bookings += len(void)
        fig.no_shows += len(void)
    return out
