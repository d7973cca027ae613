"""The ``reports`` section: capacity, warning levels, visits, the holiday calendar, the daily report.

Chinese scenic-area practice, as defaults (every number can be set in the YAML):

* instantaneous capacity = usable ground area / area per person (GB/T 50298-2018: beach sand
  5-10 m² per person, bathing water 10-20 m²; the defaults are the middle of each range);
* daily capacity = instantaneous capacity x turnover, turnover = opening hours / mean stay;
* warning levels at 80 % / 90 % / 100 % of capacity, yellow / orange / red (the ladder cities
  publish under LB/T 034-2014, which starts controls at 80 %).

A zone without a configured ``capacity`` gets one from its ground area (the camera's
calibration) and its ground kind; a site keeps the ``capacity`` of its own section.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crowdwatch.contracts.ids import Identifier

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroundKind(StrEnum):
    """What a zone's ground is, for its area per person."""

    BEACH_SAND = "beach_sand"
    BATHING_WATER = "bathing_water"
    PLAZA = "plaza"
    """A paved square or viewing platform of a scenic spot."""
    PLATFORM = "platform"
    """A bus stop's waiting area."""


DEFAULT_AREA_PER_PERSON_M2: dict[GroundKind, float] = {
    GroundKind.BEACH_SAND: 7.5,  # GB/T 50298-2018: 5-10
    GroundKind.BATHING_WATER: 15.0,  # GB/T 50298-2018: 10-20
    GroundKind.PLAZA: 2.0,  # GB/T 50298-2018 scenic squares and viewing points: 1-3
    GroundKind.PLATFORM: 0.5,  # a queue at a stop (about 2 people per m² before it is unsafe)
}


class WarningLevel(_Section):
    """One rung of the ladder: at or above ``at`` x capacity."""

    id: Identifier
    name_zh: str = Field(min_length=1, max_length=20)
    name_en: str = Field(min_length=1, max_length=20)
    at: float = Field(gt=0, le=5, description="share of capacity, 0.8 = 80 %")
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb on pages and charts")


DEFAULT_LEVELS = (
    WarningLevel(id="yellow", name_zh="黄色", name_en="yellow", at=0.8, color="#e0b000"),
    WarningLevel(id="orange", name_zh="橙色", name_en="orange", at=0.9, color="#f07800"),
    WarningLevel(id="red", name_zh="红色", name_en="red", at=1.0, color="#d02020"),
)


class OpeningHours(_Section):
    start: str = Field(default="06:00", pattern=HHMM, description="HH:MM local")
    end: str = Field(default="22:00", pattern=HHMM, description="HH:MM local, after start")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    @property
    def hours(self) -> float:
        def minutes(hhmm: str) -> int:
            return int(hhmm[:2]) * 60 + int(hhmm[3:])

        return (minutes(self.end) - minutes(self.start)) / 60


class ZoneGround(_Section):
    """How one zone's capacity is derived when it has no ``capacity`` of its own."""

    zone: Identifier
    ground: GroundKind
    area_m2: float | None = Field(
        default=None, gt=0, le=10_000_000, description="usable area; null: from the calibration"
    )


class SiteVisits(_Section):
    """One site's visit estimate and capacity inputs."""

    site: Identifier
    mean_stay_min: float | None = Field(
        default=None, gt=0, le=24 * 60, description="null: reports.mean_stay_min of the kind"
    )
    opening: OpeningHours | None = Field(default=None, description="null: reports.opening")
    zones: list[ZoneGround] = Field(default_factory=list)


class HolidayOverride(_Section):
    """A holiday of a year the calendar package does not know yet (announced each November)."""

    name: str = Field(min_length=1, max_length=40, description="e.g. national_day, spring_festival")
    first: date
    last: date
    workdays: list[date] = Field(
        default_factory=list, description="make-up workdays (weekend days worked) of it"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.last < self.first:
            raise ValueError(f"last {self.last} is before first {self.first}")
        if (self.last - self.first).days > 15:
            raise ValueError(f"{self.first}..{self.last} is longer than any holiday (16 days)")
        return self


class ReportsConfig(_Section):
    """Visitor figures, capacity and the daily index report."""

    levels: list[WarningLevel] = Field(
        default_factory=lambda: list(DEFAULT_LEVELS),
        min_length=1,
        description="warning ladder, lowest first (default 80/90/100 %)",
    )
    area_per_person_m2: dict[GroundKind, float] = Field(
        default_factory=lambda: dict(DEFAULT_AREA_PER_PERSON_M2),
        description="m² per person by ground kind (GB/T 50298-2018 defaults)",
    )
    mean_stay_min: dict[str, float] = Field(
        default_factory=lambda: {"beach": 180.0, "scenic_spot": 90.0},
        description="mean stay by site kind, for visits estimated from occupancy",
    )
    opening: OpeningHours = Field(default_factory=OpeningHours)
    sites: list[SiteVisits] = Field(default_factory=list)
    holidays: list[HolidayOverride] = Field(
        default_factory=list, description="holidays of years the calendar package lacks"
    )
    send_at: str | None = Field(
        default=None, pattern=HHMM, description="HH:MM local: send the day's report; null: never"
    )
    channels: list[Identifier] = Field(
        default_factory=list, description="ids of alerts.channels that receive the report image"
    )
    public_url: str | None = Field(
        default=None,
        description="the web server's address as readers reach it (links in the messages)",
    )

    @model_validator(mode="after")
    def _ladder(self) -> Self:
        shares = [level.at for level in self.levels]
        if shares != sorted(shares) or len(set(shares)) != len(shares):
            raise ValueError(f"levels must rise strictly, got {shares}")
        for ground, m2 in self.area_per_person_m2.items():
            if not 0 < m2 <= 1000:
                raise ValueError(f"area_per_person_m2.{ground}: expected 0 < m² <= 1000, got {m2}")
        for site_kind, stay in self.mean_stay_min.items():
            if not 0 < stay <= 24 * 60:
                raise ValueError(
                    f"mean_stay_min.{site_kind}: expected 0 < minutes <= 1440, got {stay}"
                )
        return self

    @field_validator("area_per_person_m2")
    @classmethod
    def _defaults_for_the_rest(cls, given: dict[GroundKind, float]) -> dict[GroundKind, float]:
        # Setting one ground kind keeps the standard's figure for the others.
        return {**DEFAULT_AREA_PER_PERSON_M2, **given}

    def site(self, site_id: str) -> SiteVisits | None:
        return next((s for s in self.sites if s.site == site_id), None)
