"""Training certifications of the simulated users: most users who run an instrument were
trained on it (inside users to operate it alone, outside users to use it with the operator),
the rest were not, so the reports' uncertified use has something to find. Whether a user is
certified on an instrument is drawn per pair, so it is the same in every run of a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from device_sim.fleet import Fleet
from device_sim.schedule import Timeline
from instrushare.protocol import State

CERTIFIED_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class SimCertification:
    user: str
    instrument: str
    level: str
    valid_from: date


def plan_certifications(
    fleet: Fleet, timelines: list[Timeline], *, seed: int
) -> list[SimCertification]:
    """Certifications of the users who run each instrument in ``timelines``, valid from the
    instrument's acceptance."""
    outside = {u.id for u in fleet.external_users}
    accepted = {i.id: i.registry.accepted_on for i in fleet.instruments}
    used = sorted({(seg.user, tl.instrument.id) for tl in timelines for seg in tl.segments
                   if seg.state is State.RUNNING and seg.user is not None})
    return [
        SimCertification(user, instrument, "assisted" if user in outside else "self",
                         accepted[instrument])
        for user, instrument in used
        if random.Random(f"{seed}:certified:{user}:{instrument}").random() < CERTIFIED_SHARE
    ]
