"""A simulated province: institutions, users and instruments with realistic power profiles.

Everything is derived from the seed, so the same seed gives the same fleet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

# (name, tier, region): every tier here may serve outside users, as the simulated ones do.
INSTITUTIONS = (
    ("Liaoning Institute of Analytical Science", "voucher", "Shenyang"),
    ("Shenyang University of Technology Analysis Centre", "service", "Shenyang"),
    ("Dalian Materials Research Institute", "voucher", "Dalian"),
    ("Northeast Medical University Core Facility", "service", "Shenyang"),
    ("Anshan Metallurgy Testing Centre", "service", "Anshan"),
)
OUTSIDE_FEE_FACTOR = 1.5
ANONYMOUS_SHARE = 0.25
"""Share of instruments whose gateway reads a power meter beside the instrument, not who runs
it: their sessions take the user of the booking they start in (docs/metrics.md)."""
EXTERNAL_ORGANISATIONS = (
    "Shenyang Precision Parts Co.",
    "Dalian BioPharma Ltd.",
    "Liaoyang Petrochemical Co.",
    "Fushun New Energy Materials Co.",
)
# A user's name: surname and given name by the user's number. Their counts are coprime, so
# the first 20 x 23 users all have different names.
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗"
GIVEN_NAMES = ("伟", "芳", "娜", "敏", "静", "磊", "强", "军", "艳", "涛", "明", "超", "秀英",
               "慧", "鹏", "兰", "浩", "宇", "婷", "博", "丹", "凯", "瑞")


@dataclass(frozen=True, slots=True)
class Profile:
    """How one kind of instrument draws power and is used."""

    category: str
    code: str
    idle_w: float
    run_w: float
    always_on: bool
    mean_session_min: int
    value_rmb: int
    maker: str
    model: str
    fee_rmb_per_hour: int

    def fee_per_hour(self, *, outside: bool) -> int:
        """The published hourly rate; outside users pay ``OUTSIDE_FEE_FACTOR`` times more."""
        return round(self.fee_rmb_per_hour * (OUTSIDE_FEE_FACTOR if outside else 1))


PROFILES = (
    # codes of the national classification (monitor_api.categories)
    Profile("Liquid chromatography-mass spectrometer", "010201", 350, 1400, False, 120,
            3_200_000, "Agilent", "6546 LC/Q-TOF", 600),
    Profile("Scanning electron microscope", "010101", 600, 2500, True, 90,
            2_100_000, "ZEISS", "Sigma 300", 500),
    Profile("NMR spectrometer", "010601", 1800, 3200, True, 180,
            5_200_000, "Bruker", "AVANCE NEO 600", 800),
    Profile("X-ray diffractometer", "010301", 200, 3800, False, 60,
            800_000, "Rigaku", "SmartLab", 300),
    Profile("Confocal microscope", "010801", 120, 650, False, 75,
            1_500_000, "Leica", "STELLARIS 5", 400),
    Profile("ICP-OES spectrometer", "010401", 250, 1700, False, 45,
            450_000, "Thermo Fisher", "iCAP PRO", 200),
)


@dataclass(frozen=True, slots=True)
class SimInstitution:
    id: str
    name: str
    tier: str
    region: str


@dataclass(frozen=True, slots=True)
class SimUser:
    id: str
    name: str
    institution_id: str | None
    organisation: str


@dataclass(frozen=True, slots=True)
class Registration:
    """What the unit registered: acceptance and networking dates (some past the 30 working
    days allowed), location and fees (a few units never published theirs)."""

    accepted_on: date
    networked_on: date
    location: str
    fee_schedule: str

    @classmethod
    def draw(
        cls, rng: random.Random, n: int, profile: Profile, networked_on: date | None
    ) -> Registration:
        """Accepted over 2015-2023 and networked after; or, given ``networked_on``, networked
        that day and accepted before it by as many days as the delay."""
        accepted = date(2015, 1, 1) + timedelta(days=rng.randrange(9 * 365))
        delay = rng.randrange(60, 240) if rng.random() < 0.1 else rng.randrange(3, 35)
        if networked_on is not None:
            accepted = networked_on - timedelta(days=delay)
        schedule = (f"{profile.fee_per_hour(outside=False)} RMB/h internal,"
                    f" {profile.fee_per_hour(outside=True)} RMB/h external"
                    if rng.random() < 0.85 else "")
        return cls(accepted, accepted + timedelta(days=delay),
                   f"Building {n % 7 + 1}, room {101 + n % 40}", schedule)


@dataclass(frozen=True, slots=True)
class SimInstrument:
    id: str
    gateway_id: str
    name: str
    institution_id: str
    profile: Profile
    registry: Registration
    reports_user: bool = True
    """False when its gateway sees power only: it runs and is booked as any other, but its
    readings carry no user."""

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


def _person(k: int) -> str:
    return SURNAMES[k % len(SURNAMES)] + GIVEN_NAMES[k % len(GIVEN_NAMES)]


def build_fleet(
    size: int, *, seed: int, id_prefix: str = "", networked_on: date | None = None,
    anonymous_share: float = ANONYMOUS_SHARE,
) -> Fleet:
    """``size`` instruments spread over the institutions, each behind its own gateway;
    ``networked_on``: the day the whole fleet went on the platform (else drawn per instrument,
    years ago). Each instrument's gateway reports no user with chance ``anonymous_share``,
    drawn per instrument number: the same whatever the fleet's size and id prefix, and a
    larger share keeps the anonymous instruments of a smaller one."""
    if size < 1:
        raise ValueError("a fleet needs at least one instrument")
    rng = random.Random(seed)
    registry_rng = random.Random(f"{seed}-registry")  # leaves the fleet's draws as they were
    institutions = [
        SimInstitution(f"{id_prefix}inst-{i + 1}", name, tier, region)
        for i, (name, tier, region) in enumerate(INSTITUTIONS)
    ]
    members: list[tuple[str, str | None, str]] = [
        (f"{id_prefix}u-{inst.id.rsplit('-', 1)[1]}-{n + 1:03d}", inst.id, inst.name)
        for inst in institutions for n in range(max(4, size // 10))]
    members += [(f"{id_prefix}x-{o + 1}-{n + 1:03d}", None, org)
                for o, org in enumerate(EXTERNAL_ORGANISATIONS)
                for n in range(max(2, size // 25))]
    users = [SimUser(user_id, _person(k), institution_id, organisation)
             for k, (user_id, institution_id, organisation) in enumerate(members)]
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
                registry=Registration.draw(registry_rng, n, profile, networked_on),
                reports_user=random.Random(f"{seed}:anonymous:{n}").random() >= anonymous_share,
            )
        )
    return Fleet(institutions=institutions, users=users, instruments=instruments)
