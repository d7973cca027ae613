"""The holiday calendar: periods, make-up workdays, a holiday across a month, config years."""

from __future__ import annotations

from datetime import date

import pytest

from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.reports import HolidayOverride
from crowdwatch.reports.holidays import DayKind, HolidayCalendar

CAL = HolidayCalendar()


@pytest.mark.parametrize(
    ("day", "kind", "holiday", "period_day"),
    [
        # National Day 2023 begins with Mid-Autumn on 29 Sep: one period crossing into October,
        # named after the holiday with most of its days
        (date(2023, 9, 29), DayKind.HOLIDAY, "national_day", 1),
        (date(2023, 9, 30), DayKind.HOLIDAY, "national_day", 2),
        (date(2023, 10, 1), DayKind.HOLIDAY, "national_day", 3),
        (date(2023, 10, 6), DayKind.HOLIDAY, "national_day", 8),
        # the Saturday and Sunday after it were worked (调休)
        (date(2023, 10, 7), DayKind.MAKEUP_WORKDAY, "national_day", None),
        (date(2023, 10, 8), DayKind.MAKEUP_WORKDAY, "national_day", None),
        # Spring Festival 2025: 28 Jan - 4 Feb crosses a month; Sun 26 Jan and Sat 8 Feb worked
        (date(2025, 1, 26), DayKind.MAKEUP_WORKDAY, "spring_festival", None),
        (date(2025, 1, 28), DayKind.HOLIDAY, "spring_festival", 1),
        (date(2025, 2, 1), DayKind.HOLIDAY, "spring_festival", 5),
        (date(2025, 2, 4), DayKind.HOLIDAY, "spring_festival", 8),
        (date(2025, 2, 5), DayKind.WORKDAY, None, None),
        (date(2025, 2, 8), DayKind.MAKEUP_WORKDAY, "spring_festival", None),
        # a weekend right before a Monday holiday belongs to the period
        (date(2024, 6, 8), DayKind.HOLIDAY, "dragon_boat_festival", 1),
        (date(2024, 6, 15), DayKind.WEEKEND, None, None),
        (date(2024, 6, 12), DayKind.WORKDAY, None, None),
    ],
)
def test_day_kinds(day: date, kind: DayKind, holiday: str | None, period_day: int | None) -> None:
    info = CAL.day(day)
    assert (info.kind, info.holiday, info.period_day) == (kind, holiday, period_day)


def test_month_crossing_period_bounds() -> None:
    assert CAL.period("spring_festival", 2025) == (date(2025, 1, 28), date(2025, 2, 4))
    assert CAL.period("national_day", 2023) == (date(2023, 9, 29), date(2023, 10, 6))


@pytest.mark.parametrize(
    ("day", "last_year", "previous", "weekend"),
    [
        # day 3 of National Day 2025 against day 3 of 2024; Dragon Boat 2025 day 3; Sun 28 Sep
        # 2025 was worked, so the ordinary weekend is Sat 27 Sep
        (date(2025, 10, 3), date(2024, 10, 3), date(2025, 6, 2), date(2025, 9, 27)),
        # day 8 of National Day 2025 (8 days) against 2024's last day (7 days)
        (date(2025, 10, 8), date(2024, 10, 7), date(2025, 6, 2), date(2025, 9, 27)),
        # Spring Festival 2025 day 1 against 2024's day 1 (10 Feb 2024); Sat 25 Jan was an
        # ordinary day off though Sun 26 Jan was worked
        (date(2025, 1, 28), date(2024, 2, 10), date(2025, 1, 1), date(2025, 1, 25)),
        # an ordinary Sunday: 52 weeks back, the last holiday, the Sunday before
        (date(2024, 6, 16), date(2023, 6, 18), date(2024, 6, 8), date(2024, 6, 2)),
    ],
)
def test_comparison_days(day: date, last_year: date, previous: date, weekend: date) -> None:
    assert CAL.same_day_last_year(day) == last_year
    assert CAL.previous_holiday_day(day) == previous
    assert CAL.ordinary_weekend_before(day) == weekend


def test_a_year_the_package_lacks_comes_from_the_config() -> None:
    with pytest.raises(ConfigError, match=r"no data for 2027.*reports\.holidays"):
        CAL.day(date(2027, 10, 1))
    cal = HolidayCalendar(
        [
            HolidayOverride(
                name="national_day",
                first=date(2027, 10, 1),
                last=date(2027, 10, 7),
                workdays=[date(2027, 9, 26), date(2027, 10, 9)],
            )
        ]
    )
    info = cal.day(date(2027, 10, 3))
    assert (info.kind, info.holiday, info.period_day) == (DayKind.HOLIDAY, "national_day", 3)
    assert cal.day(date(2027, 10, 9)).kind is DayKind.MAKEUP_WORKDAY
    assert cal.day(date(2027, 10, 16)).kind is DayKind.WEEKEND
    assert cal.same_day_last_year(date(2027, 10, 3)) == date(2026, 10, 3)


def test_an_override_longer_than_any_holiday_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than any holiday"):
        HolidayOverride(name="x", first=date(2027, 1, 1), last=date(2027, 2, 1))
