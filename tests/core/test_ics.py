"""Deadlines as iCalendar: checked by a small strict RFC 5545 parser written here."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kiemdiem.notify import ics
from kiemdiem.notify.messages import (
    OutstandingItem,
    PhaseDue,
    build_mime,
    compose_reminder,
    make_message_id,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2023, 11, 30, 8, 0, tzinfo=HCM)
DEADLINE = datetime(2023, 12, 5, 23, 59, tzinfo=HCM)


# ------------------------------------------------------------------ a strict little parser


@dataclass
class Component:
    name: str
    properties: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    children: list[Component] = field(default_factory=list)

    def all(self, name: str) -> list[tuple[dict[str, str], str]]:
        return [(params, value) for n, params, value in self.properties if n == name]

    def one(self, name: str) -> str:
        found = self.all(name)
        assert len(found) == 1, f"{self.name}: {name} appears {len(found)} times"
        return found[0][1]

    def params(self, name: str) -> dict[str, str]:
        found = self.all(name)
        assert len(found) == 1
        return found[0][0]

    def text(self, name: str) -> str:
        return unescape_text(self.one(name))

    def components(self, name: str) -> list[Component]:
        return [c for c in self.children if c.name == name]


_NAME = r"[A-Za-z0-9-]+"
_CONTENT_LINE = re.compile(rf"^(?P<name>{_NAME})(?P<params>(;[^:]*)?):(?P<value>.*)$")
_PARAM = re.compile(rf'^({_NAME})=("[^"]*"|[^";:,]*)$')
_UTC_TIME = re.compile(r"^\d{8}T\d{6}Z$")


def unescape_text(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            assert i + 1 < len(value), f"dangling backslash in {value!r}"
            nxt = value[i + 1]
            mapped = {"\\": "\\", ";": ";", ",": ",", "n": "\n", "N": "\n"}.get(nxt)
            assert mapped is not None, f"bad escape \\{nxt} in {value!r}"
            out.append(mapped)
            i += 2
            continue
        assert char not in ",;", f"unescaped {char!r} in TEXT value {value!r}"
        assert ord(char) >= 0x20 or char == "\t", f"control character in {value!r}"
        out.append(char)
        i += 1
    return "".join(out)


def physical_lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n"), "the stream must end with CRLF"
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, f"bare CR or LF in {line!r}"
        assert len(line) <= 75, f"line of {len(line)} octets: {line!r}"
        line.decode("utf-8")  # each physical line is whole UTF-8: no split sequence
    return lines


def unfold(data: bytes) -> list[str]:
    logical: list[bytes] = []
    for line in physical_lines(data):
        if line[:1] in (b" ", b"\t"):
            assert logical, "continuation line first"
            logical[-1] += line[1:]
        else:
            logical.append(line)
    return [line.decode("utf-8") for line in logical]


def parse_ics(data: bytes) -> Component:
    stack: list[Component] = []
    root: Component | None = None
    for line in unfold(data):
        match = _CONTENT_LINE.match(line)
        assert match, f"not a content line: {line!r}"
        name = match["name"].upper()
        params: dict[str, str] = {}
        for raw in filter(None, match["params"].split(";")):
            pm = _PARAM.match(raw)
            assert pm, f"bad parameter {raw!r} in {line!r}"
            params[pm[1].upper()] = pm[2].strip('"')
        value = match["value"]
        if name == "BEGIN":
            component = Component(value)
            if stack:
                stack[-1].children.append(component)
            else:
                assert root is None, "more than one top-level component"
                root = component
            stack.append(component)
        elif name == "END":
            assert stack and stack[-1].name == value, f"END:{value} does not close {stack[-1:]}"
            stack.pop()
        else:
            assert stack, f"property outside a component: {line!r}"
            stack[-1].properties.append((name, params, value))
    assert not stack, f"unclosed: {[c.name for c in stack]}"
    assert root is not None and root.name == "VCALENDAR"
    check_calendar(root)
    return root


def utc_time(value: str) -> datetime:
    assert _UTC_TIME.match(value), f"not a UTC date-time: {value!r}"
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def check_calendar(cal: Component) -> None:
    assert cal.one("VERSION") == "2.0"
    assert cal.one("PRODID")
    assert cal.one("METHOD") == "PUBLISH"
    events = cal.components("VEVENT")
    assert events, "no VEVENT"
    uids = [e.one("UID") for e in events]
    assert len(set(uids)) == len(uids), "duplicate UIDs"
    for event in events:
        utc_time(event.one("DTSTAMP"))
        assert utc_time(event.one("DTSTART")) < utc_time(event.one("DTEND"))
        event.text("SUMMARY"), event.text("DESCRIPTION")
        for alarm in event.components("VALARM"):
            assert alarm.one("ACTION") == "DISPLAY"
            alarm.text("DESCRIPTION")  # required for DISPLAY alarms
            # RFC 5545 3.8.6.3: a duration, or with VALUE=DATE-TIME an absolute time that must be UTC.
            if alarm.params("TRIGGER").get("VALUE") == "DATE-TIME":
                utc_time(alarm.one("TRIGGER"))
            else:
                assert re.match(r"^-?P", alarm.one("TRIGGER"))


# ----------------------------------------------------------------------------------- tests


def test_deadline_event_ends_at_the_deadline_in_utc():
    data = ics.deadline_event(
        "kiemdiem-187-kh-du-phase-1@kiemdiem.local",
        "Hạn nộp hồ sơ kiểm điểm",
        "Chi bộ gửi hồ sơ đánh giá, xếp loại",
        DEADLINE,
        now=NOW,
        url="http://127.0.0.1:8080/nop?unit=CB01&phase=1",
    )
    cal = parse_ics(data)
    (event,) = cal.components("VEVENT")
    assert event.one("DTEND") == "20231205T165900Z"  # 23:59 +07:00
    assert event.one("DTSTART") == "20231205T162900Z"  # 30 minutes before
    assert event.one("DTSTAMP") == "20231130T010000Z"
    assert event.one("UID") == "kiemdiem-187-kh-du-phase-1@kiemdiem.local"
    assert event.text("SUMMARY") == "Hạn nộp hồ sơ kiểm điểm"
    assert event.text("DESCRIPTION") == "Chi bộ gửi hồ sơ đánh giá, xếp loại"
    assert event.one("URL") == "http://127.0.0.1:8080/nop?unit=CB01&phase=1"
    (alarm,) = event.components("VALARM")
    assert alarm.one("TRIGGER") == "-P1D"
    assert alarm.params("TRIGGER") == {"RELATED": "END"}  # one day before the deadline


def test_text_escaping_round_trips():
    nasty = 'Hạn; "nộp", gấp\\khẩn\nDòng hai\r\nDòng ba\rDòng bốn'
    data = ics.deadline_event("u1", nasty, nasty, DEADLINE, now=NOW)
    (event,) = parse_ics(data).components("VEVENT")
    expected = nasty.replace("\r\n", "\n").replace("\r", "\n")
    assert event.text("SUMMARY") == expected
    assert event.text("DESCRIPTION") == expected


@pytest.mark.parametrize("filler", ["a", "ệ", "€", "😀", "aệ", "ệ😀a"])
@pytest.mark.parametrize("length", [1, 60, 61, 62, 63, 64, 74, 75, 76, 150, 400])
def test_folding_never_splits_a_character(filler, length):
    text = (filler * length)[:length]
    data = ics.deadline_event("u", text, "x" + text, DEADLINE, now=NOW)
    (event,) = parse_ics(data).components("VEVENT")  # checks 75 octets and whole UTF-8 lines
    assert event.text("SUMMARY") == text
    assert event.text("DESCRIPTION") == "x" + text


def test_fold_line_exact_octets():
    line = "DESCRIPTION:" + "ệ" * 40  # 12 + 120 octets
    folded = ics.fold_line(line)
    parts = folded.split(b"\r\n")
    assert all(len(p) <= 75 for p in parts)
    assert parts[0] == ("DESCRIPTION:" + "ệ" * 21).encode()  # 12 + 63 = 75
    assert all(p.startswith(b" ") for p in parts[1:])
    assert b"".join([parts[0]] + [p[1:] for p in parts[1:]]).decode() == line


def test_crlf_line_endings_only():
    data = ics.deadline_event("u", "a\nb", "c", DEADLINE, now=NOW)
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert data.startswith(b"BEGIN:VCALENDAR\r\n") and data.endswith(b"END:VCALENDAR\r\n")


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        ics.deadline_event("u", "s", "d", datetime(2023, 12, 5, 23, 59), now=NOW)
    with pytest.raises(ValueError):
        ics.deadline_event("u", "s", "d", DEADLINE, now=datetime(2023, 11, 30))


def test_url_with_line_break_is_refused():
    with pytest.raises(ValueError):
        ics.deadline_event("u", "s", "d", DEADLINE, now=NOW, url="http://x\r\nEVIL:1")


def test_calendar_feed_holds_every_event():
    events = [
        ics.CalendarEvent(f"uid-{i}@kiemdiem.local", f"Giai đoạn {i}", "Mô tả, chi tiết",
                          DEADLINE + timedelta(days=i))
        for i in range(3)
    ]
    data = ics.calendar_feed(events, now=NOW, name="Hạn nộp – Chi bộ Văn phòng Sở")
    cal = parse_ics(data)
    assert data.count(b"BEGIN:VCALENDAR") == 1
    assert cal.text("X-WR-CALNAME") == "Hạn nộp – Chi bộ Văn phòng Sở"
    vevents = cal.components("VEVENT")
    assert [e.one("UID") for e in vevents] == [e.uid for e in events]
    assert [e.one("DTEND") for e in vevents] == ["20231205T165900Z", "20231206T165900Z",
                                                 "20231207T165900Z"]


def test_deadline_given_in_another_zone_is_the_same_instant():
    same_instant = DEADLINE.astimezone(ZoneInfo("Europe/Paris"))
    a = parse_ics(ics.deadline_event("u", "s", "d", DEADLINE, now=NOW))
    b = parse_ics(ics.deadline_event("u", "s", "d", same_instant, now=NOW))
    assert a.components("VEVENT")[0].one("DTEND") == b.components("VEVENT")[0].one("DTEND")


def test_reminder_mail_carries_a_strictly_valid_ics_per_phase():
    dues = [
        PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "kiem_diem_chi_bo",
                 "Chi bộ kiểm điểm, gửi hồ sơ", DEADLINE, "trước 23:59 ngày 05/12/2023",
                 (OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "bien_ban_hoi_nghi",
                                  "Biên bản hội nghị"),)),
        PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "khac_phuc",
                 "Kế hoạch khắc phục", datetime(2023, 12, 28, 17, 0, tzinfo=HCM),
                 "trước 17:00 ngày 28/12/2023",
                 (OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "ke_hoach_khac_phuc",
                                  "Kế hoạch khắc phục hạn chế, khuyết điểm"),)),
    ]
    composed = compose_reminder("Đồng chí Bí thư", dues, submit_url="http://127.0.0.1:8080",
                                now=NOW)
    mime = build_mime(composed, sender="Văn phòng Đảng ủy <vp@kiemdiem.local>",
                      recipient="bithu@example.vn", message_id=make_message_id("k"), date=NOW)
    parsed = email.message_from_bytes(mime.as_bytes(policy=email.policy.SMTP),
                                      policy=email.policy.default)
    calendars = [p for p in parsed.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(calendars) == 2
    ends = []
    for part in calendars:
        assert part.get_param("method") == "PUBLISH"
        assert part.get_filename().endswith(".ics")
        cal = parse_ics(part.get_payload(decode=True))
        (event,) = cal.components("VEVENT")
        assert "187-KH/ĐU" in event.text("SUMMARY")
        assert event.one("URL") == "http://127.0.0.1:8080"
        ends.append((event.one("DTSTART"), event.one("DTEND")))
    assert ends == [("20231205T162900Z", "20231205T165900Z"),
                    ("20231228T093000Z", "20231228T100000Z")]


def _split_last_fold_inside_a_character(data: bytes) -> bytes:
    head, sep, tail = data.rpartition("ệ".encode() + b"\r\n ")
    assert sep
    return head + "ệ".encode()[:2] + b"\r\n " + "ệ".encode()[2:] + tail


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda d: d.replace(b"\\,", b","), id="unescaped comma"),
        pytest.param(lambda d: d.replace(b"\r\n", b"\n"), id="bare LF"),
        pytest.param(lambda d: d.replace(b"\r\n ", b""), id="line over 75 octets"),
        pytest.param(lambda d: d.replace(b"END:VEVENT\r\n", b""), id="unbalanced"),
        pytest.param(lambda d: _split_last_fold_inside_a_character(d), id="split utf-8"),
    ],
)
def test_the_parser_is_strict(broken):
    good = ics.deadline_event("u", "Hạn, nộp", "ệ" * 80, DEADLINE, now=NOW)
    parse_ics(good)
    bad = broken(good)
    assert bad != good
    with pytest.raises((AssertionError, UnicodeDecodeError)):
        parse_ics(bad)


def test_the_alarm_goes_off_on_the_morning_of_the_working_day_before_the_deadline():
    """A Sunday 23:59 deadline (187-KH/ĐU, 10/12/2023) reminded on Saturday night was of no use:
    the alarm is at the start of office hours on the working day before, Friday 08/12 07:30."""
    from kiemdiem.calendar import WorkCalendar

    calendar = WorkCalendar()
    sunday = datetime(2023, 12, 10, 23, 59, 59, tzinfo=HCM)
    assert calendar.morning_before(sunday) == datetime(2023, 12, 8, 7, 30, tzinfo=HCM)
    assert calendar.morning_before(datetime(2023, 12, 5, 23, 59, 59, tzinfo=HCM)) == datetime(2023, 12, 4, 7, 30, tzinfo=HCM)
    due = PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "dang_uy_bao_cao_khoi", "Đảng ủy Sở báo cáo Khối", sunday,
                   "trước ngày 10/12/2023", (OutstandingItem("SCT", "Đảng bộ Sở Công Thương", "bao_cao_ket_qua_kiem_diem", "Báo cáo"),))
    composed = compose_reminder("Đảng ủy Sở Công Thương", [due], submit_url="http://127.0.0.1:8080", now=NOW, calendar=calendar)
    (event,) = parse_ics(composed.attachments[0].data).components("VEVENT")
    (alarm,) = event.components("VALARM")
    assert alarm.one("TRIGGER") == "20231208T003000Z" and alarm.params("TRIGGER") == {"VALUE": "DATE-TIME"}


def test_a_reminder_sent_after_the_mornings_alarm_rings_on_the_deadlines_morning():
    """The one-day reminder (Monday 04/12 08:00 for Tuesday 05/12 23:59) came after its alarm time
    (Monday 07:30): the alarm rings on Tuesday at 07:30 instead of in the past."""
    from kiemdiem.calendar import WorkCalendar

    calendar = WorkCalendar()
    tuesday = datetime(2023, 12, 5, 23, 59, 59, tzinfo=HCM)
    due = PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "chi_bo_kiem_diem", "Chi bộ kiểm điểm", tuesday,
                   "trước ngày 05/12/2023", (OutstandingItem("VP1", "Chi bộ Văn phòng 1", "bien_ban_hoi_nghi", "Biên bản"),))

    def trigger(now):
        composed = compose_reminder("Chi bộ Văn phòng 1", [due], submit_url="http://127.0.0.1:8080", now=now, calendar=calendar)
        (event,) = parse_ics(composed.attachments[0].data).components("VEVENT")
        (alarm,) = event.components("VALARM")
        return alarm.one("TRIGGER")

    assert trigger(datetime(2023, 11, 30, 8, tzinfo=HCM)) == "20231204T003000Z"  # before it: Monday 07:30
    assert trigger(datetime(2023, 12, 4, 8, tzinfo=HCM)) == "20231205T003000Z"  # after it: Tuesday 07:30
