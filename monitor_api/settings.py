"""API settings: read once from the environment in the CLI (or built by tests) and passed in."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from instrushare.protocol import HEARTBEAT_TIMEOUT_S
from instrushare.settings import DEFAULT_DATABASE_URL, DatabaseUrl

TIMEZONE = "Asia/Shanghai"
"""Day boundaries of every reporting period."""


class EvaluationRules(BaseModel):
    """Weights and thresholds of the annual evaluation; docs/metrics.md explains each."""

    operation_points: float = Field(default=40.0, ge=0)
    full_use_hours: float = Field(default=1200.0, gt=0)
    sharing_points: float = Field(default=20.0, ge=0)
    sharing_target: float = Field(default=0.10, gt=0)
    management_points: float = Field(default=40.0, ge=0)
    assessed_points: float = Field(default=0.0, ge=0, le=100)
    """Points of the evaluation office's assessment (a mark out of 100 per institution and
    year) in every instrument's score; 0: the platform scores what it measures only. Lower
    the other points so that all four add up to 100."""
    cycle_years: int = Field(default=1, ge=1, le=5)
    """Calendar years one evaluation covers, ending with the year it is named by: 1, or 2 for
    the national rules in force from 2026 (every two years). Hours are judged per year."""
    min_value_rmb: float = Field(default=0.0, ge=0)
    """Instruments registered at a lower original value are not evaluated (the national
    rules from 2026 evaluate those of 500,000 RMB or more); 0: every instrument."""
    report_tolerance: float = Field(default=0.10, ge=0)
    """Reported hours may differ from measured ones by this share of the measured hours ..."""
    report_tolerance_hours: float = Field(default=20.0, ge=0)
    """... or by this many hours, whichever is more, before the report is flagged."""
    excellent: float = 90.0
    good: float = 75.0
    passing: float = 60.0
    low_utilisation_hours: float = Field(default=400.0, ge=0)
    silent_days: int = Field(default=30, ge=1)
    frequent_faults: int = Field(default=6, ge=1)
    """Faults in the evaluated span from which the running state is 故障频繁."""
    awaiting_repair_days: float = Field(default=7.0, gt=0)
    """In fault this long at the span's end: 待修."""
    star_scores: list[float] = Field(default=[60.0, 70.0, 80.0, 90.0, 95.0], max_length=5)
    """Scores from which a service or voucher institution earns its 1st, 2nd, ... 5th star
    (ascending); below the first it has none. Incubation-pool institutions get no rating."""

    @field_validator("star_scores")
    @classmethod
    def _stars_ascend(cls, scores: list[float]) -> list[float]:
        if any(not 0 <= s <= 100 for s in scores) or scores != sorted(scores):
            raise ValueError("star scores must ascend between 0 and 100")
        return scores

    @model_validator(mode="after")
    def _points_make_100(self) -> EvaluationRules:
        total = (self.operation_points + self.sharing_points + self.management_points
                 + self.assessed_points)
        if abs(total - 100) > 1e-6:
            raise ValueError(
                f"operation, sharing, management and assessed points add up to {total:g},"
                " not 100")
        if not 0 <= self.passing <= self.good <= self.excellent <= 100:
            raise ValueError(f"grade bounds must ascend between 0 and 100: passing"
                             f" {self.passing:g}, good {self.good:g}, excellent"
                             f" {self.excellent:g}")
        return self


class ApiSettings(BaseSettings):
    """Everything monitor_api needs; env names use the INSTRUSHARE_API_ prefix."""

    model_config = SettingsConfigDict(
        env_prefix="INSTRUSHARE_API_", env_nested_delimiter="__", extra="ignore",
        populate_by_name=True, allow_inf_nan=False,
    )

    database_url: DatabaseUrl = Field(default=DEFAULT_DATABASE_URL,
                                      validation_alias="DATABASE_URL")
    heartbeat_timeout_s: float = Field(default=HEARTBEAT_TIMEOUT_S, gt=0)
    """A gap in an instrument's samples longer than this is offline; the ingest's
    ``session_max_gap_s`` should be the same, so that sessions end where running does."""
    compliance_threshold_rmb: float = Field(default=300_000.0, ge=0)
    compliance_working_days: int = Field(default=30, ge=1)
    no_show_grace_s: float = Field(default=1800.0, ge=0, le=86400)
    """Grace around a booking's window: no-shows, and which booking a session with no
    reported user was run under (docs/metrics.md, "Users by booking")."""
    no_show_limit: int = Field(default=3, ge=0)
    """No-shows within ``no_show_window_days`` that suspend a user's booking requests; 0: never."""
    no_show_window_days: int = Field(default=90, ge=1, le=3650)
    booking_void_after_s: float = Field(default=3600.0, ge=0, le=86400)
    """An approved booking nobody has used this long after its start becomes void, its window
    free again; 0: never."""
    booking_sweep_interval_s: float = Field(default=60.0, ge=0)
    """How often lapsed bookings are voided in the background; 0: only when a slot on the
    instrument is booked or approved."""
    sse_poll_s: float = Field(default=1.0, gt=0)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    pool_timeout_s: float = Field(default=30.0, gt=0)
    """How long a request waits for a free connection before it gets a 503."""
    report_parallelism: int = Field(default=2, ge=1, le=16)
    """Statements a report over many instruments runs at once, each on a pooled connection,
    for its figures and as many for availability: about the database server's cores."""
    rollup_interval_s: float = Field(default=3600.0, ge=0)
    """How often the availability and usage rollups of past months are filled in the
    background; 0: never (reports then compute what they miss themselves)."""
    rollup_months: int = Field(default=13, ge=1, le=120)
    """Whole months before the current one that the background filler covers."""
    fleet_gauge_interval_s: float = Field(default=30.0, ge=0)
    """How often instruments per state and gateways online are counted for ``/metrics``;
    0: never, and those gauges are not exported."""
    evaluation: EvaluationRules = Field(default_factory=EvaluationRules)

    @model_validator(mode="after")
    def _pool_fits(self) -> ApiSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(f"pool_min_size ({self.pool_min_size}) must not exceed"
                             f" pool_max_size ({self.pool_max_size})")
        return self

    @property
    def heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_timeout_s)

    @property
    def no_show_grace(self) -> timedelta:
        return timedelta(seconds=self.no_show_grace_s)

    @property
    def booking_void_after(self) -> timedelta:
        return timedelta(seconds=self.booking_void_after_s)

    @property
    def no_show_window(self) -> timedelta:
        return timedelta(days=self.no_show_window_days)
