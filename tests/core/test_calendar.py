"""Working-day calendar: Vietnamese holidays from the `holidays` package, plan overrides, office hours."""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import holidays
import pendulum
import pytest

from kiemdiem.calendar import (
    TIMEZONE,
    Swap,
    WorkCalendar,
    format_date,
    format_instant,
    override_conflicts,
    parse_instant,
)
from kiemdiem.plan import load_plan
from tests.support import PLANS

D = dt.date
VN = ZoneInfo(TIMEZONE)
PLUS7 = dt.timedelta(hours=7)
TET_2024 = [D(2024, 2, 8) + dt.timedelta(days=i) for i in range(7)]  # Thu 08/02 – Wed 14/02


def vn(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=VN)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


def brute_add(c: WorkCalendar, day: dt.date, n: int) -> dt.date:
    # Reference: walk one day at a time.
    step = 1 if n > 0 else -1
    while n:
        day += dt.timedelta(days=step)
        if c.is_working_day(day):
            n -= step
    return day


# --- what the installed holidays package gives ------------------------------------------------


def test_package_has_the_whole_tet_2024_break_in_vietnamese():
    official = holidays.country_holidays("VN", years=2024, language="vi")
    assert all(d in official for d in TET_2024)
    assert official[D(2024, 2, 8)] == "29 Tết"
    assert official[D(2024, 2, 9)] == "Giao thừa Tết Nguyên Đán"
    assert official[D(2024, 2, 10)] == "Tết Nguyên Đán"
    assert official[D(2024, 2, 14)] == "Mùng năm Tết Nguyên Đán"
    assert D(2024, 2, 7) not in official and D(2024, 2, 15) not in official


def test_package_has_national_day_2025_as_monday_and_tuesday():
    official = holidays.country_holidays("VN", years=2025, language="vi")
    assert official[D(2025, 9, 1)] == "Quốc khánh"
    assert official[D(2025, 9, 2)] == "Quốc khánh"
    # 30–31/08/2025 are a plain weekend, not holidays in the package.
    assert D(2025, 8, 30) not in official and D(2025, 8, 31) not in official


def test_package_knows_the_2025_swap_saturday_26_04_for_friday_02_05():
    official = holidays.country_holidays("VN", years=2025, language="vi")
    assert official[D(2025, 5, 2)] == "Ngày nghỉ (thay cho ngày 26/04/2025)"
    assert D(2025, 4, 26) in official.weekend_workdays


# --- holiday names and working days -----------------------------------------------------------


def test_holiday_names_are_vietnamese(cal):
    assert cal.holiday_name(D(2024, 1, 1)) == "Tết Dương lịch"
    assert cal.holiday_name(D(2024, 2, 10)) == "Tết Nguyên Đán"  # a Saturday that is also a holiday
    assert cal.holiday_name(D(2024, 4, 18)) == "Ngày Giỗ Tổ Hùng Vương"
    assert cal.holiday_name(D(2024, 4, 30)) == "Ngày Chiến thắng"
    assert cal.holiday_name(D(2024, 5, 1)) == "Ngày Quốc tế Lao động"
    assert cal.holiday_name(D(2025, 9, 2)) == "Quốc khánh"


def test_plain_days_and_weekends_have_no_holiday_name(cal):
    assert cal.holiday_name(D(2024, 12, 5)) is None  # Thursday
    assert cal.holiday_name(D(2024, 12, 7)) is None  # Saturday
    assert cal.holiday_name(D(2024, 12, 8)) is None  # Sunday


def test_is_working_day_weekdays_weekends_holidays(cal):
    assert cal.is_working_day(D(2024, 12, 6))  # Friday
    assert not cal.is_working_day(D(2024, 12, 7))  # Saturday
    assert not cal.is_working_day(D(2024, 12, 8))  # Sunday
    assert all(not cal.is_working_day(d) for d in TET_2024)
    assert cal.is_working_day(D(2024, 2, 7)) and cal.is_working_day(D(2024, 2, 15))
    assert not cal.is_working_day(D(2025, 9, 1)) and not cal.is_working_day(D(2025, 9, 2))


def test_package_swap_saturday_is_working_and_friday_is_off(cal):
    assert cal.is_working_day(D(2025, 4, 26))  # Saturday worked in return
    assert not cal.is_working_day(D(2025, 5, 2))
    assert cal.add_working_days(D(2025, 4, 24), 2) == D(2025, 4, 26)  # Fri 25, Sat 26
    assert cal.add_working_days(D(2025, 4, 24), 3) == D(2025, 4, 28)
    # Tue 29/04, then 30/04, 01/05, 02/05 off and a weekend.
    assert cal.add_working_days(D(2025, 4, 29), 1) == D(2025, 5, 5)


def test_is_working_day_accepts_an_aware_datetime_by_its_local_day(cal):
    assert not cal.is_working_day(utc(2024, 12, 6, 18, 0))  # Saturday 01:00 in Hà Nội
    assert cal.is_working_day(utc(2024, 12, 5, 18, 0))  # Friday 01:00


# --- add_working_days / working_days_between --------------------------------------------------


def test_one_working_day_after_the_eve_of_tet_2024_is_after_the_break(cal):
    assert cal.add_working_days(D(2024, 2, 7), 1) == D(2024, 2, 15)
    assert cal.add_working_days(D(2024, 2, 7), 2) == D(2024, 2, 16)


def test_three_working_days_before_national_day_2025(cal):
    # Before Wed 03/09: Tue 02 and Mon 01 off, 30–31/08 weekend; Fri 29 (1), Thu 28 (2), Wed 27 (3).
    assert cal.add_working_days(D(2025, 9, 3), -3) == D(2025, 8, 27)
    assert cal.add_working_days(D(2025, 9, 3), -1) == D(2025, 8, 29)
    assert cal.add_working_days(D(2025, 8, 29), 1) == D(2025, 9, 3)


def test_national_day_2024_is_monday_and_tuesday(cal):
    assert not cal.is_working_day(D(2024, 9, 2)) and not cal.is_working_day(D(2024, 9, 3))
    assert cal.add_working_days(D(2024, 8, 30), 1) == D(2024, 9, 4)


def test_negative_n_counts_back(cal):
    assert cal.add_working_days(D(2024, 2, 15), -1) == D(2024, 2, 7)
    assert cal.add_working_days(D(2024, 12, 9), -1) == D(2024, 12, 6)  # Monday -> Friday
    assert cal.add_working_days(D(2024, 12, 7), -1) == D(2024, 12, 6)  # from a Saturday
    assert cal.add_working_days(D(2024, 12, 8), 1) == D(2024, 12, 9)  # from a Sunday


def test_zero_returns_the_day_itself_even_when_not_working(cal):
    assert cal.add_working_days(D(2024, 12, 8), 0) == D(2024, 12, 8)
    assert cal.add_working_days(D(2024, 2, 10), 0) == D(2024, 2, 10)
    assert cal.add_working_days(D(2024, 12, 5), 0) == D(2024, 12, 5)


def test_crossing_new_year(cal):
    assert cal.add_working_days(D(2024, 12, 31), 1) == D(2025, 1, 2)  # 01/01 off
    assert cal.add_working_days(D(2025, 1, 2), -1) == D(2024, 12, 31)


def test_working_days_between(cal):
    assert cal.working_days_between(D(2024, 2, 7), D(2024, 2, 15)) == 1
    assert cal.working_days_between(D(2024, 2, 15), D(2024, 2, 7)) == -1
    assert cal.working_days_between(D(2025, 8, 29), D(2025, 9, 3)) == 1
    assert cal.working_days_between(D(2024, 12, 5), D(2024, 12, 5)) == 0
    assert cal.working_days_between(D(2024, 12, 6), D(2024, 12, 8)) == 0  # only a weekend
    assert cal.working_days_between(D(2024, 12, 2), D(2024, 12, 9)) == 5


def test_working_days_left_from_an_instant_to_a_deadline(cal):
    # What a reminder says is left: days after the tick's local day up to the deadline's.
    tuesday = vn(2023, 12, 5, 23, 59, 59)
    assert cal.working_days_left(vn(2023, 11, 30, 8, 0), tuesday) == 3  # Fri, Mon, Tue
    assert cal.working_days_left(vn(2023, 12, 1, 8, 0), tuesday) == 2  # a late "3 days" reminder
    assert cal.working_days_left(utc(2023, 12, 4, 17, 30), tuesday) == 0  # 00:30 Tuesday local
    assert cal.working_days_left(vn(2023, 12, 6, 8, 0), tuesday) == 0  # passed: none, never negative
    sunday = vn(2023, 12, 10, 23, 59, 59)
    assert cal.working_days_left(vn(2023, 12, 8, 8, 0), sunday) == 0  # Friday: no working day before Sunday
    assert cal.working_days_left(vn(2023, 12, 6, 8, 0), sunday) == 2


def test_weekday_names_are_vietnamese_and_local():
    from kiemdiem.calendar import weekday_name

    assert weekday_name(D(2023, 12, 10)) == "Chủ nhật"
    assert weekday_name(D(2023, 12, 4)) == "thứ Hai"
    assert weekday_name(utc(2023, 12, 9, 17, 30)) == "Chủ nhật"  # 00:30 Sunday local


def test_working_days_in_2024(cal):
    # 262 weekdays; off on weekdays: 01/01, Tết 08,09,12,13,14/02, 18/04, 29/04, 30/04, 01/05,
    # 02/09, 03/09 (12 days); Saturday 04/05 worked in return for 29/04.
    assert cal.working_days_between(D(2023, 12, 31), D(2024, 12, 31)) == 262 - 12 + 1


def test_add_matches_a_day_by_day_walk_across_years():
    fresh = WorkCalendar()
    for start in (D(2024, 2, 7), D(2025, 9, 3), D(2024, 12, 7), D(2023, 1, 20)):
        for n in (1, 2, 5, 17, 60, 250, 700, -1, -3, -60, -250, -700):
            assert fresh.add_working_days(start, n) == brute_add(fresh, start, n), (start, n)


def test_coverage_grows_backwards_and_forwards_from_a_first_query():
    fresh = WorkCalendar()
    assert fresh.add_working_days(D(2025, 1, 2), -600) == brute_add(WorkCalendar(), D(2025, 1, 2), -600)
    assert fresh.add_working_days(D(2025, 1, 2), 1500) == brute_add(WorkCalendar(), D(2025, 1, 2), 1500)


def test_round_trip_between_and_add(cal):
    start = D(2024, 11, 4)  # a Monday, a working day
    for n in range(-300, 301, 7):
        assert cal.working_days_between(start, cal.add_working_days(start, n)) == n


def test_concurrent_first_use_from_threads_agrees():
    fresh = WorkCalendar()
    results: list[dt.date] = []

    def work() -> None:
        results.append(fresh.add_working_days(D(2030, 6, 3), -1500))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert results[0] == brute_add(WorkCalendar(), D(2030, 6, 3), -1500)


# --- plan overrides ---------------------------------------------------------------------------


def test_plan_restating_the_whole_tet_break_keeps_it_off_with_the_plans_names():
    c = WorkCalendar(extra_holidays={d: "Nghỉ Tết Giáp Thìn" for d in TET_2024})
    assert all(not c.is_working_day(d) for d in TET_2024)
    assert c.holiday_name(D(2024, 2, 12)) == "Nghỉ Tết Giáp Thìn"
    assert c.add_working_days(D(2024, 2, 7), 1) == D(2024, 2, 15)


def test_extra_holiday_moves_deadlines():
    c = WorkCalendar(extra_holidays={D(2024, 2, 15): "Nghỉ theo quyết định của Tỉnh ủy"})
    assert not c.is_working_day(D(2024, 2, 15))
    assert c.holiday_name(D(2024, 2, 15)) == "Nghỉ theo quyết định của Tỉnh ủy"
    assert c.add_working_days(D(2024, 2, 7), 1) == D(2024, 2, 16)
    assert c.working_days_between(D(2024, 2, 7), D(2024, 2, 16)) == 1


def test_extra_working_saturday():
    c = WorkCalendar(extra_working_days={D(2024, 12, 7)})
    assert c.is_working_day(D(2024, 12, 7))
    assert c.holiday_name(D(2024, 12, 7)) is None
    assert c.add_working_days(D(2024, 12, 6), 1) == D(2024, 12, 7)
    assert c.add_working_days(D(2024, 12, 9), -1) == D(2024, 12, 7)
    assert c.is_working_time(vn(2024, 12, 7, 10, 0))
    assert c.next_working_instant(vn(2024, 12, 6, 18, 0)) == vn(2024, 12, 7, 7, 30)


def test_extra_working_day_overrides_a_package_holiday():
    c = WorkCalendar(extra_working_days={D(2024, 9, 3)})
    assert c.is_working_day(D(2024, 9, 3))
    assert c.holiday_name(D(2024, 9, 3)) is None
    assert c.add_working_days(D(2024, 8, 30), 1) == D(2024, 9, 3)


def test_swap_makes_day_off_a_holiday_and_saturday_a_working_day():
    swap = Swap(day_off=D(2024, 12, 30), work_on=D(2024, 12, 28), note="Nghỉ bù dịp Tết Dương lịch")
    c = WorkCalendar(swaps=[swap])
    assert not c.is_working_day(D(2024, 12, 30))
    assert c.holiday_name(D(2024, 12, 30)) == "Nghỉ bù dịp Tết Dương lịch"
    assert c.is_working_day(D(2024, 12, 28))
    assert c.add_working_days(D(2024, 12, 27), 1) == D(2024, 12, 28)
    assert c.add_working_days(D(2024, 12, 27), 2) == D(2024, 12, 31)
    assert c.add_working_days(D(2024, 12, 27), 3) == D(2025, 1, 2)
    # Without the swap: Mon 30, Tue 31, Thu 02/01.
    assert WorkCalendar().add_working_days(D(2024, 12, 27), 1) == D(2024, 12, 30)


def test_swap_without_note_gets_a_default_name_and_may_cross_the_year():
    c = WorkCalendar(swaps=[Swap(day_off=D(2025, 1, 2), work_on=D(2024, 12, 28))])
    assert c.holiday_name(D(2025, 1, 2)) == "Nghỉ bù (làm bù ngày 28/12/2024)"
    assert c.is_working_day(D(2024, 12, 28))
    assert c.add_working_days(D(2024, 12, 31), 1) == D(2025, 1, 3)


def test_clashing_overrides_are_reported_and_the_day_off_wins():
    day = D(2024, 12, 5)
    assert override_conflicts(extra_holidays={day: "Nghỉ"}, extra_working_days={day}) == [
        "ngày 05/12/2024 vừa là ngày nghỉ 'Nghỉ' vừa là ngày làm việc bổ sung; ngày này được tính là ngày nghỉ"
    ]
    c = WorkCalendar(extra_holidays={day: "Nghỉ"}, extra_working_days={day})
    assert not c.is_working_day(day)
    assert c.holiday_name(day) == "Nghỉ"
    assert override_conflicts(swaps=[Swap(D(2024, 12, 30), D(2024, 12, 28))]) == []
    assert override_conflicts(swaps=[Swap(day, day)])


def test_constructor_rejects_bad_timezone_and_hours():
    with pytest.raises(ValueError, match="múi giờ"):
        WorkCalendar(timezone="Asia/Sai_Gon")
    with pytest.raises(ValueError):
        WorkCalendar(work_start=dt.time(17, 0), work_end=dt.time(7, 30))


def test_holidays_between(cal):
    assert cal.holidays_between(D(2025, 8, 30), D(2025, 9, 3)) == [
        (D(2025, 9, 1), "Quốc khánh"),
        (D(2025, 9, 2), "Quốc khánh"),
    ]
    assert cal.holidays_between(D(2025, 9, 3), D(2025, 8, 30)) == []


# --- instants and quiet hours -----------------------------------------------------------------


def test_at_and_end_of_day_are_local_with_plus_seven(cal):
    start = cal.at(D(2024, 12, 5), dt.time(7, 30))
    assert start.utcoffset() == PLUS7
    assert start.isoformat() == "2024-12-05T07:30:00+07:00"
    end = cal.end_of_day(D(2023, 12, 5))
    assert end.isoformat() == "2023-12-05T23:59:59+07:00"
    assert end == utc(2023, 12, 5, 16, 59, 59)


def test_local_converts_and_refuses_naive(cal):
    local = cal.local(utc(2024, 12, 5, 20, 0))
    assert (local.date(), local.hour, local.utcoffset()) == (D(2024, 12, 6), 3, PLUS7)
    with pytest.raises(ValueError):
        cal.local(dt.datetime(2024, 12, 5, 20, 0))


def test_is_working_time_bounds(cal):
    assert cal.is_working_time(vn(2024, 12, 6, 7, 30))
    assert not cal.is_working_time(vn(2024, 12, 6, 7, 29, 59))
    assert cal.is_working_time(vn(2024, 12, 6, 16, 59, 59))
    assert not cal.is_working_time(vn(2024, 12, 6, 17, 0))  # end is exclusive
    assert cal.is_working_time(utc(2024, 12, 6, 0, 30))  # 07:30 local
    assert not cal.is_working_time(utc(2024, 12, 6, 10, 0))  # 17:00 local
    assert not cal.is_working_time(vn(2024, 12, 7, 10, 0))  # Saturday
    assert not cal.is_working_time(vn(2024, 2, 12, 10, 0))  # Tết


def test_saturday_morning_waits_for_monday(cal):
    nxt = cal.next_working_instant(vn(2024, 12, 7, 10, 0))
    assert nxt == vn(2024, 12, 9, 7, 30)
    assert nxt.utcoffset() == PLUS7


def test_friday_evening_waits_for_monday(cal):
    assert cal.next_working_instant(vn(2024, 12, 6, 18, 0)) == vn(2024, 12, 9, 7, 30)
    assert cal.next_working_instant(vn(2024, 12, 6, 17, 0)) == vn(2024, 12, 9, 7, 30)


def test_early_morning_waits_for_opening_the_same_day(cal):
    assert cal.next_working_instant(vn(2024, 12, 5, 6, 0)) == vn(2024, 12, 5, 7, 30)
    assert cal.next_working_instant(utc(2024, 12, 4, 23, 0)) == vn(2024, 12, 5, 7, 30)  # 06:00 local


def test_day_before_tet_is_working_until_closing_then_waits_out_the_break(cal):
    assert cal.is_working_time(vn(2024, 2, 7, 16, 0))
    assert cal.next_working_instant(vn(2024, 2, 7, 16, 0)) == vn(2024, 2, 7, 16, 0)
    assert cal.next_working_instant(vn(2024, 2, 7, 17, 30)) == vn(2024, 2, 15, 7, 30)
    assert cal.next_working_instant(vn(2024, 2, 10, 9, 0)) == vn(2024, 2, 15, 7, 30)


def test_working_instant_is_returned_as_is_on_the_local_clock(cal):
    instant = utc(2024, 12, 5, 3, 0)  # 10:00 local
    result = cal.next_working_instant(instant)
    assert result == instant
    assert result.utcoffset() == PLUS7 and result.hour == 10


def test_results_compare_with_pendulum_datetimes(cal):
    nxt = cal.next_working_instant(vn(2024, 12, 7, 10, 0))
    assert nxt == pendulum.datetime(2024, 12, 9, 7, 30, tz=TIMEZONE)
    assert nxt == pendulum.datetime(2024, 12, 9, 0, 30, tz="UTC")
    assert cal.is_working_time(pendulum.datetime(2024, 12, 9, 8, 0, tz=TIMEZONE))


def test_custom_office_hours():
    c = WorkCalendar(work_start=dt.time(8, 0), work_end=dt.time(11, 30))
    assert not c.is_working_time(vn(2024, 12, 5, 7, 45))
    assert c.next_working_instant(vn(2024, 12, 5, 7, 45)) == vn(2024, 12, 5, 8, 0)
    assert c.next_working_instant(vn(2024, 12, 5, 12, 0)) == vn(2024, 12, 6, 8, 0)


def test_a_plan_calendar_has_the_sending_window_it_is_given():
    plan = load_plan(PLANS / "187-KH-DU-2023.yaml", work_hours=(dt.time(8, 0), dt.time(11, 0)))
    calendar = plan.calendar
    assert (calendar.work_start, calendar.work_end) == (dt.time(8, 0), dt.time(11, 0))
    assert calendar.next_working_instant(vn(2023, 12, 7, 7, 45)) == vn(2023, 12, 7, 8, 0)
    assert calendar.next_working_instant(vn(2023, 12, 7, 11, 30)) == vn(2023, 12, 8, 8, 0)
    with pytest.raises(ValueError, match="phải trước"):
        load_plan(PLANS / "187-KH-DU-2023.yaml", work_hours=(dt.time(11, 0), dt.time(8, 0)))


# --- parsing and formatting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-05T17:00", vn(2024, 12, 5, 17, 0)),
        ("2024-12-05 17:00", vn(2024, 12, 5, 17, 0)),
        ("2024-12-05T17:00:30", vn(2024, 12, 5, 17, 0, 30)),
        ("2024-12-05T17:00:00+07:00", vn(2024, 12, 5, 17, 0)),
        ("2024-12-05T10:00:00Z", vn(2024, 12, 5, 17, 0)),
        ("2024-12-05T17:00:00+00:00", vn(2024, 12, 6, 0, 0)),
        ("2024-12-05", vn(2024, 12, 5, 0, 0)),
        ("05/12/2024 17:00", vn(2024, 12, 5, 17, 0)),
        ("05/12/2024", vn(2024, 12, 5, 0, 0)),
        ("  05/12/2024 08:15 ", vn(2024, 12, 5, 8, 15)),
    ],
)
def test_parse_instant_formats(text, expected):
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.utcoffset() == PLUS7
    assert (parsed.date(), parsed.time()) == (expected.date(), expected.time())  # local wall clock


@pytest.mark.parametrize(
    "text", ["", "   ", "abc", "10:00", "2024", "31/02/2024", "2024-02-30", "05-12-2024", "12/31/2024", "05/12/2024 25:00"]
)
def test_parse_instant_rejects_bad_input_naming_the_formats(text):
    with pytest.raises(ValueError) as info:
        parse_instant(text)
    message = str(info.value)
    assert "ISO 8601" in message and "dd/mm/yyyy HH:MM" in message and "dd/mm/yyyy" in message
    assert "không đọc được" in message


def test_format_date_and_instant():
    assert format_date(D(2024, 2, 8)) == "08/02/2024"
    assert format_date(utc(2024, 12, 5, 20, 0)) == "06/12/2024"  # local day
    assert format_instant(vn(2024, 12, 5, 7, 5)) == "05/12/2024 07:05"
    assert format_instant(utc(2024, 12, 5, 20, 0)) == "06/12/2024 03:00"
    with pytest.raises(ValueError):
        format_instant(dt.datetime(2024, 12, 5, 7, 5))


def test_long_spans_round_trip(cal):
    # Forward and back over a year and more, across two Tết breaks, lands where it started.
    start = D(2024, 11, 1)
    for n in (1, 37, 300, 520):
        assert cal.add_working_days(cal.add_working_days(start, n), -n) == start
        assert cal.working_days_between(start, cal.add_working_days(start, n)) == n
