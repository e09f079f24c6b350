"""A simulated province: institutions, users and instruments with realistic power profiles.

Everything is derived from the seed, so the same seed gives the same fleet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

INSTITUTION_NAMES = (
    "Liaoning Institute of Analytical Science",
    "Shenyang University of Technology Analysis Centre",
    "Dalian Materials Research Institute",
    "Northeast Medical University Core Facility",
    "Anshan Metallurgy Testing Centre",
)
EXTERNAL_ORGANISATIONS = (
    "Shenyang Precision Parts Co.",
    "Dalian BioPharma Ltd.",
    "Liaoyang Petrochemical Co.",
    "Fushun New Energy Materials Co.",
)


@dataclass(frozen=True, slots=True)
class Profile:
    """How one kind of instrument draws power and is used."""

    category: str
    code: str
    idle_w: float
    run_w: float
    always_on: bool
    mean_session_min: int


PROFILES = (
    Profile("Liquid chromatography-mass spectrometer", "010101", 350, 1400, False, 120),
    Profile("Scanning electron microscope", "020201", 600, 2500, True, 90),
    Profile("NMR spectrometer", "010403", 1800, 3200, True, 180),
    Profile("X-ray diffractometer", "010702", 200, 3800, False, 60),
    Profile("Confocal microscope", "020304", 120, 650, False, 75),
    Profile("ICP-OES spectrometer", "010108", 250, 1700, False, 45),
)


@dataclass(frozen=True, slots=True)
class SimInstitution:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class SimUser:
    id: str
    institution_id: str | None
    organisation: str


@dataclass(frozen=True, slots=True)
class SimInstrument:
    id: str
    gateway_id: str
    name: str
    institution_id: str
    profile: Profile

    @property
    def run_on_w(self) -> float:
        """Detector threshold half way between the noisiest idle and running readings."""
        return (self.profile.idle_w * 1.05 + self.profile.run_w * 0.9) / 2

    @property
    def run_off_w(self) -> float:
        return self.run_on_w - 0.1 * (self.run_on_w - self.profile.idle_w * 1.05)


@dataclass(frozen=True, slots=True)
class Fleet:
    institutions: list[SimInstitution]
    users: list[SimUser]
    instruments: list[SimInstrument]

    def internal_users(self, institution_id: str) -> list[SimUser]:
        return [u for u in self.users if u.institution_id == institution_id]

    @property
    def external_users(self) -> list[SimUser]:
        return [u for u in self.users if u.institution_id is None]


def build_fleet(size: int, *, seed: int, id_prefix: str = "") -> Fleet:
    """``size`` instruments spread over the institutions, each behind its own gateway."""
    if size < 1:
        raise ValueError("a fleet needs at least one instrument")
    rng = random.Random(seed)
    institutions = [
        SimInstitution(f"{id_prefix}inst-{i + 1}", name) for i, name in enumerate(INSTITUTION_NAMES)
    ]
    users = [
        SimUser(f"{id_prefix}u-{inst.id.rsplit('-', 1)[1]}-{n + 1:03d}", inst.id, inst.name)
        for inst in institutions
        for n in range(max(4, size // 10))
    ]
    users += [
        SimUser(f"{id_prefix}x-{o + 1}-{n + 1:03d}", None, org)
        for o, org in enumerate(EXTERNAL_ORGANISATIONS)
        for n in range(max(2, size // 25))
    ]
    instruments = []
    for n in range(size):
        profile = rng.choice(PROFILES)
        owner = institutions[n % len(institutions)]
        instruments.append(
            SimInstrument(
                id=f"{id_prefix}ins-{n + 1:05d}",
                gateway_id=f"{id_prefix}gw-{n + 1:05d}",
                name=f"{profile.category} #{n + 1}",
                institution_id=owner.id,
                profile=profile,
            )
        )
    return Fleet(institutions=institutions, users=users, instruments=instruments)
