"""Deadlines as iCalendar (RFC 5545) data: one event per deadline, or a feed of many.

A deadline becomes a 30-minute event that ends at the deadline, with a display alarm at the
time the caller gives (the morning of the working day before), else one day before it. Times
are written in UTC (``...Z``), so no VTIMEZONE is needed and every client shows the deadline in
its own zone. The output is bytes: UTF-8, CRLF line endings, content
lines folded at 75 octets without splitting a UTF-8 sequence.

Pure functions, no settings: the caller passes ``now`` (used for DTSTAMP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PRODID = "-//kiemdiem//kiemdiem deadlines//VI"
EVENT_LENGTH = timedelta(minutes=30)
ALARM_BEFORE = "-P1D"  # one day before the deadline (the event's end)
MAX_LINE_OCTETS = 75

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class CalendarEvent:
    """One deadline. ``uid`` must be stable: a client updates the event it already has."""

    uid: str
    summary: str
    description: str
    deadline: datetime  # timezone-aware
    url: str | None = None
    alarm_at: datetime | None = None  # when the alarm goes off; None: one day before the deadline


def deadline_event(
    uid: str,
    summary: str,
    description: str,
    deadline: datetime,
    *,
    now: datetime,
    url: str | None = None,
    alarm_at: datetime | None = None,
) -> bytes:
    """A VCALENDAR (METHOD:PUBLISH) holding one VEVENT that ends at ``deadline``."""
    return calendar_feed([CalendarEvent(uid, summary, description, deadline, url, alarm_at)], now=now)


def calendar_feed(
    events: Iterable[CalendarEvent], *, now: datetime, name: str | None = None
) -> bytes:
    """A VCALENDAR (METHOD:PUBLISH) with one VEVENT per event, in the order given.

    ``name`` becomes ``X-WR-CALNAME`` (the title most clients show for a subscribed feed).
    """
    stamp = format_utc(now)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ]
    if name:
        lines.append(f"X-WR-CALNAME:{escape_text(name)}")
    for event in events:
        lines.extend(_event_lines(event, stamp))
    lines.append("END:VCALENDAR")
    return b"".join(fold_line(line) + b"\r\n" for line in lines)


def _event_lines(event: CalendarEvent, stamp: str) -> list[str]:
    end = event.deadline
    start = end - EVENT_LENGTH
    lines = [
        "BEGIN:VEVENT",
        f"UID:{escape_text(event.uid)}",
        f"DTSTAMP:{stamp}",
        f"DTSTART:{format_utc(start)}",
        f"DTEND:{format_utc(end)}",
        f"SUMMARY:{escape_text(event.summary)}",
        f"DESCRIPTION:{escape_text(event.description)}",
    ]
    if event.url:
        lines.append(f"URL:{_uri(event.url)}")
    lines += [
        "TRANSP:TRANSPARENT",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        f"DESCRIPTION:{escape_text(event.summary)}",
        f"TRIGGER;VALUE=DATE-TIME:{format_utc(event.alarm_at)}" if event.alarm_at else f"TRIGGER;RELATED=END:{ALARM_BEFORE}",
        "END:VALARM",
        "END:VEVENT",
    ]
    return lines


def format_utc(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ``; refuses naive datetimes (their zone would be a guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: an ICS time needs a zone")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma, newline."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL_CHARS.sub("", value)
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\n", "\\n")
    )


def _uri(value: str) -> str:
    if any(ch in value for ch in "\r\n") or _CONTROL_CHARS.search(value):
        raise ValueError(f"control characters in URL {value!r}")
    return value


def fold_line(line: str) -> bytes:
    """Fold a content line into chunks of at most 75 octets (RFC 5545 §3.1).

    Continuation lines start with one space, which counts toward their 75 octets. A chunk
    boundary never falls inside a multi-octet UTF-8 character: each chunk is as long as it can
    be without cutting one.
    """
    whole = line.encode("utf-8")
    if len(whole) <= MAX_LINE_OCTETS:
        return whole  # most lines need no folding
    out: list[bytes] = []
    start, room, size = 0, MAX_LINE_OCTETS, len(whole)
    while size - start > room:
        end = start + room
        while whole[end] & 0xC0 == 0x80:  # a continuation octet: the cut would split a character
            end -= 1
        out.append(whole[start:end])
        start, room = end, MAX_LINE_OCTETS - 1  # the leading space takes one octet
    out.append(whole[start:])
    return b"\r\n ".join(out)
