"""China's public holidays and make-up workdays, offline, and the days a day compares with.

The calendar package ``chinesecalendar`` (MIT, no network) knows the State Council's
announcements for 2004 up to its release year; a year it lacks is added in the config
(``reports.holidays``) until a new release has it.  A *holiday period* is a maximal run of
days off (statutory holidays and the weekend days around them) holding at least one
statutory holiday day; its days are numbered from 1, so "day 3 of National Day 2025" is
compared with day 3 of National Day 2024::

    2023-09-29 Fri  Mid-autumn   day 1 ─┐
    2023-09-30 Sat  National Day day 2  │ one period, named after the holiday that has the
    ...                                 │ most of its days (National Day), crossing a month
    2023-10-06 Fri  National Day day 8 ─┘
    2023-10-07 Sat  make-up workday (not a day off, not an ordinary weekend)
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from types import ModuleType
from typing import assert_never

from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.reports import HolidayOverride

MAX_PERIOD_DAYS = 16
"""No holiday period is longer (the longest, Spring Festival 2026, is 9 days)."""

HOLIDAY_NAMES: dict[str, tuple[str, str]] = {
    "new_years_day": ("元旦", "New Year's Day"),
    "spring_festival": ("春节", "Spring Festival"),
    "tomb_sweeping_day": ("清明节", "Tomb-sweeping Day"),
    "labour_day": ("劳动节", "Labour Day"),
    "dragon_boat_festival": ("端午节", "Dragon Boat Festival"),
    "national_day": ("国庆节", "National Day"),
    "mid_autumn_festival": ("中秋节", "Mid-Autumn Festival"),
    "anti_fascist_70th_day": ("抗战胜利70周年纪念日", "Victory Day (70th)"),
}


def holiday_name(key: str) -> tuple[str, str]:
    """(Chinese, English) name of a holiday key; a config-only key is shown as written."""
    return HOLIDAY_NAMES.get(key, (key, key.replace("_", " ")))


class DayKind(StrEnum):
    HOLIDAY = "holiday"
    """A day off of a holiday period (a statutory day or a weekend day inside the period)."""
    MAKEUP_WORKDAY = "makeup_workday"
    """A weekend day worked in exchange for a holiday (调休上班)."""
    WEEKEND = "weekend"
    """An ordinary Saturday or Sunday."""
    WORKDAY = "workday"


@dataclass(frozen=True, slots=True)
class DayInfo:
    day: date
    kind: DayKind
    holiday: str | None = None
    """The period's holiday key (``national_day``), for HOLIDAY and MAKEUP_WORKDAY."""
    period_day: int | None = None
    """1-based position in the holiday period (HOLIDAY only)."""
    period_first: date | None = None
    period_last: date | None = None

    @property
    def off(self) -> bool:
        """A day most people do not work: the days visitors come."""
        match self.kind:
            case DayKind.HOLIDAY | DayKind.WEEKEND:
                return True
            case DayKind.MAKEUP_WORKDAY | DayKind.WORKDAY:
                return False
            case _:
                assert_never(self.kind)


def _calendar_module() -> ModuleType:
    try:
        return importlib.import_module("chinese_calendar")
    except ImportError as exc:
        raise ConfigError(
            "the holiday calendar needs chinesecalendar: pip install 'crowdwatch[reports]'"
        ) from exc


class HolidayCalendar:
    """Which days are holidays, make-up workdays and ordinary weekends, and their periods.

    Args:
        overrides: ``reports.holidays``; a year named there is taken from the config only
            (the package is not asked about it).

    Example:
        >>> cal = HolidayCalendar()
        >>> info = cal.day(date(2024, 10, 3))
        >>> (info.kind.value, info.holiday, info.period_day)
        ('holiday', 'national_day', 3)
    """

    def __init__(self, overrides: list[HolidayOverride] | None = None) -> None:
        self._override_years: set[int] = set()
        self._override_off: dict[date, str] = {}
        self._override_work: dict[date, str] = {}
        for item in overrides or []:
            self._override_years.update({item.first.year, item.last.year})
            self._override_years.update(d.year for d in item.workdays)
            day = item.first
            while day <= item.last:
                self._override_off[day] = item.name
                day += timedelta(days=1)
            for worked in item.workdays:
                self._override_work[worked] = item.name
        self._statutory = cache(self._statutory_uncached)

    def _statutory_uncached(self, day: date) -> tuple[bool | None, str | None]:
        """(True: statutory day off / False: make-up workday / None: neither, holiday key)."""
        if day.year in self._override_years:
            if day in self._override_off:
                return True, self._override_off[day]
            if day in self._override_work:
                return False, self._override_work[day]
            return None, None
        module = _calendar_module()
        try:
            is_holiday, name = module.get_holiday_detail(day)
        except NotImplementedError as exc:
            raise ConfigError(
                f"the holiday calendar has no data for {day.year}; add that year's holidays "
                "under reports.holidays or upgrade chinesecalendar"
            ) from exc
        key = _key_of(module, name)
        weekend = day.weekday() >= 5
        if is_holiday and key is not None:
            return True, key
        if not is_holiday and key is not None and weekend:
            return False, key  # a weekend day worked for that holiday
        return None, None

    def _is_off(self, day: date) -> bool:
        statutory, _ = self._statutory(day)
        if statutory is not None:
            return statutory
        return day.weekday() >= 5

    def day(self, day: date) -> DayInfo:
        """What kind of day ``day`` is, and where it lies in its holiday period."""
        statutory, key = self._statutory(day)
        if statutory is False:
            return DayInfo(day, DayKind.MAKEUP_WORKDAY, holiday=key)
        period = self._period_around(day) if self._is_off(day) else None
        if period is not None:
            first, last, name = period
            return DayInfo(
                day,
                DayKind.HOLIDAY,
                holiday=name,
                period_day=(day - first).days + 1,
                period_first=first,
                period_last=last,
            )
        return DayInfo(day, DayKind.WEEKEND if day.weekday() >= 5 else DayKind.WORKDAY)

    def _period_around(self, day: date) -> tuple[date, date, str] | None:
        """(first, last, holiday key) of the run of days off around ``day``, if it holds a
        statutory holiday."""
        first = last = day
        while self._is_off(first - timedelta(days=1)) and (day - first).days < MAX_PERIOD_DAYS:
            first -= timedelta(days=1)
        while self._is_off(last + timedelta(days=1)) and (last - day).days < MAX_PERIOD_DAYS:
            last += timedelta(days=1)
        names: Counter[str] = Counter()
        current = first
        while current <= last:
            statutory, key = self._statutory(current)
            if statutory and key is not None:
                names[key] += 1
            current += timedelta(days=1)
        if not names:
            return None
        # Most days wins; a tie goes to the holiday that comes first in the period.
        name = max(names, key=lambda k: names[k])
        return first, last, name

    def period(self, holiday: str, year: int) -> tuple[date, date] | None:
        """(first, last) day of ``holiday``'s period in ``year`` (by its first day), if any."""
        day = date(year, 1, 1)
        end = date(year, 12, 31)
        while day <= end:
            info = self.day(day)
            if info.kind is DayKind.HOLIDAY and info.holiday == holiday:
                assert info.period_first is not None and info.period_last is not None
                if info.period_first.year == year:
                    return info.period_first, info.period_last
                day = info.period_last
            day += timedelta(days=1)
        return None

    def same_day_last_year(self, day: date) -> date | None:
        """Day N of the same holiday last year (the last day when last year's was shorter);
        for an ordinary day, the same weekday 52 weeks before."""
        info = self.day(day)
        if info.kind is DayKind.HOLIDAY and info.holiday is not None:
            assert info.period_first is not None and info.period_day is not None
            found = self.period(info.holiday, info.period_first.year - 1)
            if found is None:
                return None
            first, last = found
            return min(first + timedelta(days=info.period_day - 1), last)
        return day - timedelta(weeks=52)

    def previous_holiday_day(self, day: date) -> date | None:
        """The same day number of the holiday period before ``day``'s (any holiday), or of the
        last one before ``day`` when ``day`` is no holiday; ``None`` past a year back."""
        info = self.day(day)
        start = info.period_first if info.period_first is not None else day
        index = info.period_day or 1
        probe = start - timedelta(days=1)
        floor = start - timedelta(days=400)
        while probe > floor:
            found = self.day(probe)
            if found.kind is DayKind.HOLIDAY:
                assert found.period_first is not None and found.period_last is not None
                return min(found.period_first + timedelta(days=index - 1), found.period_last)
            probe -= timedelta(days=1)
        return None

    def ordinary_weekend_before(self, day: date) -> date | None:
        """The latest ordinary Saturday or Sunday before ``day`` (the same weekday when
        ``day`` is one), not in a holiday period and not worked."""
        probe = day - timedelta(days=1)
        wanted = {day.weekday()} if day.weekday() >= 5 else {5, 6}
        floor = day - timedelta(days=120)
        while probe > floor:
            if probe.weekday() in wanted and self.day(probe).kind is DayKind.WEEKEND:
                return probe
            probe -= timedelta(days=1)
        return None


def _key_of(module: ModuleType, name: str | None) -> str | None:
    """The Holiday enum member name (``national_day``) of the package's English name."""
    if name is None:
        return None
    for member in module.Holiday:
        if member.value == name:
            return str(member.name)
    return name.lower().replace(" ", "_").replace("'", "")
