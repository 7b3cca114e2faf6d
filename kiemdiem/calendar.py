"""Working-day calendar for Vietnam: public holidays, government swaps, plan overrides, office hours.

Pure: no database, no wall clock. Every instant it returns is an aware datetime in the
calendar's time zone (Asia/Ho_Chi_Minh by default, +07:00, no DST).

Sources of truth, in increasing priority:
1. Monday–Friday are working days, Saturday and Sunday are not;
2. the `holidays` package for "VN": public holidays (Tết Dương lịch, Tết Nguyên Đán, Giỗ Tổ
   Hùng Vương, 30/4, 1/5, Quốc khánh and its extra day) and the government's yearly swaps it
   knows of ("Ngày nghỉ (thay cho ngày 26/04/2025)" plus the Saturday worked in return);
3. the plan: swaps, extra working days and extra holidays. When the plan lists one day as both
   a day off and a working day, the day off wins, so an "at least N working days" rule is
   never met on a day someone thought was a holiday; `override_conflicts` reports such clashes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import threading
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import pendulum

TIMEZONE = "Asia/Ho_Chi_Minh"

_COUNTRY = "VN"
_WEEKEND = (5, 6)  # Saturday, Sunday
WEEKDAYS_VI = ("thứ Hai", "thứ Ba", "thứ Tư", "thứ Năm", "thứ Sáu", "thứ Bảy", "Chủ nhật")
# Years covered per extension step when add_working_days runs off the end (about 245 working days/year).
_APPROX_WORKING_DAYS_PER_YEAR = 200

_ACCEPTED_FORMATS = (
    "ISO 8601 (ví dụ 2024-12-05T17:00 hoặc 2024-12-05T17:00:00+07:00; không ghi múi giờ thì hiểu là giờ Việt Nam), "
    "'dd/mm/yyyy HH:MM' (ví dụ 05/12/2024 17:00) hoặc 'dd/mm/yyyy' (ví dụ 05/12/2024, tức 00:00)"
)
# An ISO input must start with a full date; pendulum would otherwise fill a bare "10:00" with
# today's date (a hidden wall-clock read) and a bare "2024" with 1 January.
_ISO_DATE_PREFIX = re.compile(r"^\d{4}(-\d{2}-\d{2}|\d{4}|-W\d{2}-\d|W\d{3}|-\d{3})(?=$|[T ])")
_DMY_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")


@dataclass(frozen=True)
class Swap:
    """Government "làm bù" swap: day_off becomes a holiday, work_on (e.g. a Saturday) becomes a working day."""

    day_off: dt.date
    work_on: dt.date
    note: str = ""


class _Coverage(NamedTuple):
    """Working days of a contiguous range of years; replaced whole so readers never see a half-built state."""

    first_year: int
    last_year: int
    ordinals: list[int]  # sorted ordinals of working days
    working: frozenset[int]


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"múi giờ không hợp lệ: '{timezone}'") from exc


def _holiday_language() -> str | None:
    # Vietnamese names when the installed package has them; otherwise its default language.
    supported = getattr(holidays.country_holidays(_COUNTRY).__class__, "supported_languages", ())
    return "vi" if "vi" in supported else None


_LANGUAGE = _holiday_language()


def override_conflicts(
    extra_holidays: dict[dt.date, str] | None = None,
    extra_working_days: set[dt.date] | None = None,
    swaps: list[Swap] | tuple[Swap, ...] = (),
) -> list[str]:
    """Days a plan lists both as off and as working, as Vietnamese messages (empty when consistent)."""
    off: dict[dt.date, str] = {d: f"ngày nghỉ '{name}'" for d, name in (extra_holidays or {}).items()}
    on: dict[dt.date, str] = {d: "ngày làm việc bổ sung" for d in (extra_working_days or set())}
    problems = []
    for swap in swaps:
        if swap.day_off == swap.work_on:
            problems.append(f"ngày {format_date(swap.day_off)} vừa là ngày nghỉ vừa là ngày làm bù của cùng một lần hoán đổi")
        off.setdefault(swap.day_off, f"ngày nghỉ bù (làm bù ngày {format_date(swap.work_on)})")
        on.setdefault(swap.work_on, f"ngày làm bù (thay cho ngày {format_date(swap.day_off)})")
    for day in sorted(off.keys() & on.keys()):
        problems.append(f"ngày {format_date(day)} vừa là {off[day]} vừa là {on[day]}; ngày này được tính là ngày nghỉ")
    return problems


class WorkCalendar:
    """Working days and office hours for one campaign; cheap to query, builds each year once on demand."""

    def __init__(
        self,
        *,
        timezone: str = TIMEZONE,
        extra_holidays: dict[dt.date, str] | None = None,
        extra_working_days: set[dt.date] | None = None,
        swaps: list[Swap] | tuple[Swap, ...] = (),
        work_start: dt.time = dt.time(7, 30),
        work_end: dt.time = dt.time(17, 0),
    ):
        self.timezone = timezone
        self._zone = _zone(timezone)
        if work_start >= work_end:
            raise ValueError(f"giờ bắt đầu làm việc ({work_start:%H:%M}) phải trước giờ kết thúc ({work_end:%H:%M})")
        # Naive times: office hours are read on the local wall clock.
        self.work_start = work_start.replace(tzinfo=None)
        self.work_end = work_end.replace(tzinfo=None)

        off_names: dict[dt.date, str] = {}
        on: set[dt.date] = set(extra_working_days or ())
        for swap in swaps:
            off_names[swap.day_off] = swap.note or f"Nghỉ bù (làm bù ngày {format_date(swap.work_on)})"
            on.add(swap.work_on)
        off_names.update(extra_holidays or {})  # a named extra holiday is the plan's own wording
        self._plan_off = off_names
        self._plan_on = frozenset(on - off_names.keys())  # a day off wins a clash (see module doc)
        self.extra_holidays = dict(extra_holidays or {})
        self.extra_working_days = frozenset(extra_working_days or ())
        self.swaps = tuple(swaps)

        self._names: dict[int, dict[dt.date, str]] = {}  # year -> names of non-working holidays
        self._year_ordinals: dict[int, list[int]] = {}
        self._coverage = _Coverage(0, -1, [], frozenset())
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"WorkCalendar(timezone={self.timezone!r}, extra_holidays={len(self._plan_off)}, "
            f"extra_working_days={len(self._plan_on)}, hours={self.work_start:%H:%M}-{self.work_end:%H:%M})"
        )

    # --- days -------------------------------------------------------------------------------

    def holiday_name(self, day: dt.date) -> str | None:
        """Why a day is a holiday (Vietnamese name), or None for working days and plain weekends."""
        day = self._as_date(day)
        self._ensure_years(day.year, day.year)
        return self._names[day.year].get(day)

    def is_working_day(self, day: dt.date) -> bool:
        day = self._as_date(day)
        coverage = self._ensure_years(day.year, day.year)
        return day.toordinal() in coverage.working

    def add_working_days(self, day: dt.date, n: int) -> dt.date:
        """n > 0: the n-th working day after `day`; n < 0: the |n|-th working day before; n == 0: `day` itself."""
        day = self._as_date(day)
        if n == 0:
            return day
        ordinal = day.toordinal()
        coverage = self._ensure_years(day.year, day.year)
        while True:
            if n > 0:
                index = bisect.bisect_right(coverage.ordinals, ordinal) + n - 1
                if index < len(coverage.ordinals):
                    return dt.date.fromordinal(coverage.ordinals[index])
                missing = index - len(coverage.ordinals) + 1
                last = coverage.last_year + missing // _APPROX_WORKING_DAYS_PER_YEAR + 1
                coverage = self._ensure_years(coverage.first_year, last)
            else:
                index = bisect.bisect_left(coverage.ordinals, ordinal) + n
                if index >= 0:
                    return dt.date.fromordinal(coverage.ordinals[index])
                first = coverage.first_year - (-index) // _APPROX_WORKING_DAYS_PER_YEAR - 1
                coverage = self._ensure_years(first, coverage.last_year)

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days d with start < d <= end; negative (the same count) when end < start."""
        start, end = self._as_date(start), self._as_date(end)
        coverage = self._ensure_years(min(start.year, end.year), max(start.year, end.year))
        ordinals = coverage.ordinals
        return bisect.bisect_right(ordinals, end.toordinal()) - bisect.bisect_right(ordinals, start.toordinal())

    def working_days_left(self, now: dt.datetime, deadline: dt.datetime) -> int:
        """Working days after `now`'s local day up to and including `deadline`'s: the count a
        reminder offset is read against (0 on the deadline's day, when only days off remain
        before it, and once it has passed)."""
        return max(0, self.working_days_between(self.local(now).date(), self.local(deadline).date()))

    def holidays_between(self, start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
        """Named non-working days with start <= d <= end, in order (to explain a computed deadline)."""
        start, end = self._as_date(start), self._as_date(end)
        if end < start:
            return []
        self._ensure_years(start.year, end.year)
        found = []
        for year in range(start.year, end.year + 1):
            found += [(d, name) for d, name in self._names[year].items() if start <= d <= end]
        return sorted(found)

    # --- instants ---------------------------------------------------------------------------

    def local(self, instant: dt.datetime) -> dt.datetime:
        """The same instant on the local clock; a naive datetime is refused, it names no instant."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"thời điểm {instant.isoformat()} không có múi giờ")
        return instant.astimezone(self._zone)

    def at(self, day: dt.date, time: dt.time) -> dt.datetime:
        return dt.datetime.combine(self._as_date(day), time.replace(tzinfo=None), tzinfo=self._zone)

    def morning_before(self, deadline: dt.datetime) -> dt.datetime:
        """The start of office hours on the last working day before the deadline's day: when a
        calendar reminds of it (a Sunday 23:59 deadline on Friday morning, not Saturday night)."""
        day = self.add_working_days(self.local(deadline).date(), -1)
        return self.at(day, self.work_start)

    def end_of_day(self, day: dt.date) -> dt.datetime:
        """23:59:59 local: how "trước ngày dd/mm/yyyy" is read unless the plan sets an hour."""
        return self.at(day, dt.time(23, 59, 59))

    def is_working_time(self, instant: dt.datetime) -> bool:
        local = self.local(instant)
        return self.work_start <= local.time().replace(tzinfo=None) < self.work_end and self.is_working_day(local.date())

    def next_working_instant(self, instant: dt.datetime) -> dt.datetime:
        """`instant` (on the local clock) if inside office hours, else the start of the next working window."""
        local = self.local(instant)
        day = local.date()
        if self.is_working_day(day):
            clock = local.time().replace(tzinfo=None)
            if clock < self.work_start:
                return self.at(day, self.work_start)
            if clock < self.work_end:
                return local
        return self.at(self.add_working_days(day, 1), self.work_start)

    # --- internals --------------------------------------------------------------------------

    def _as_date(self, day: dt.date) -> dt.date:
        # A datetime is a date subclass; its calendar day is the local one, never its UTC one.
        if isinstance(day, dt.datetime):
            return self.local(day).date()
        return day

    def _ensure_years(self, first: int, last: int) -> _Coverage:
        coverage = self._coverage
        if coverage.first_year <= first and last <= coverage.last_year:
            return coverage
        if first < dt.MINYEAR or last > dt.MAXYEAR:
            raise OverflowError("ngày nằm ngoài khoảng lịch hỗ trợ")
        with self._lock:
            coverage = self._coverage
            if coverage.first_year <= coverage.last_year:  # keep the range contiguous for bisect
                first, last = min(first, coverage.first_year), max(last, coverage.last_year)
            for year in range(first, last + 1):
                if year not in self._year_ordinals:
                    self._build_year(year)
            ordinals = [o for year in range(first, last + 1) for o in self._year_ordinals[year]]
            self._coverage = _Coverage(first, last, ordinals, frozenset(ordinals))
            return self._coverage

    def _build_year(self, year: int) -> None:
        # Next year too: a swap for an early-January holiday can make a late-December Saturday a working day.
        years = [year] if year == dt.MAXYEAR else [year, year + 1]
        official = holidays.country_holidays(_COUNTRY, years=years, language=_LANGUAGE)
        names = {d: name for d, name in official.items() if d.year == year}
        on = {d for d in getattr(official, "weekend_workdays", ()) if d.year == year}
        names.update({d: name for d, name in self._plan_off.items() if d.year == year})
        on -= self._plan_off.keys()
        on |= {d for d in self._plan_on if d.year == year}
        for d in on:
            names.pop(d, None)

        ordinals = []
        for ordinal in range(dt.date(year, 1, 1).toordinal(), dt.date(year, 12, 31).toordinal() + 1):
            d = dt.date.fromordinal(ordinal)
            if d in on or (d.weekday() not in _WEEKEND and d not in names):
                ordinals.append(ordinal)
        self._names[year] = names
        self._year_ordinals[year] = ordinals


def parse_instant(text: str, timezone: str = TIMEZONE) -> dt.datetime:
    """Read a user-given instant (e.g. `--at`): ISO 8601, "dd/mm/yyyy HH:MM" or "dd/mm/yyyy"; naive = local."""
    zone = _zone(timezone)
    cleaned = (text or "").strip()
    if _ISO_DATE_PREFIX.match(cleaned):
        try:
            parsed = pendulum.parse(cleaned, tz=timezone)
        except (ValueError, TypeError, OverflowError):
            parsed = None
        if isinstance(parsed, dt.datetime):
            exact = dt.datetime(
                parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second, parsed.microsecond,
                tzinfo=dt.timezone(parsed.utcoffset()),
            )
            return exact.astimezone(zone)
    for pattern in _DMY_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, pattern).replace(tzinfo=zone)
        except ValueError:
            continue
    raise ValueError(f"không đọc được thời điểm '{text}'. Các định dạng được chấp nhận: {_ACCEPTED_FORMATS}")


def weekday_name(d: dt.date, timezone: str = TIMEZONE) -> str:
    """The Vietnamese weekday ("thứ Hai" … "Chủ nhật"); an aware datetime is named by its local day."""
    if isinstance(d, dt.datetime):
        d = _local(d, timezone)
    return WEEKDAYS_VI[d.weekday()]


def format_date(d: dt.date, timezone: str = TIMEZONE) -> str:
    """dd/mm/yyyy; an aware datetime is shown by its local day."""
    if isinstance(d, dt.datetime):
        d = _local(d, timezone)
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def format_instant(i: dt.datetime, timezone: str = TIMEZONE) -> str:
    """dd/mm/yyyy HH:MM on the local clock."""
    local = _local(i, timezone)
    return f"{local.day:02d}/{local.month:02d}/{local.year:04d} {local.hour:02d}:{local.minute:02d}"


def _local(instant: dt.datetime, timezone: str) -> dt.datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"thời điểm {instant.isoformat()} không có múi giờ")
    return instant.astimezone(_zone(timezone))
