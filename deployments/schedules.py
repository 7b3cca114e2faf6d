"""Schedules from a plan: the hourly tick during the campaign, and each phase on the days that matter."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kiemdiem.plan import Phase, Plan

TIMEZONE = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


def campaign_window(plan: Plan) -> Window:
    """From the morning of the first reminder day to the day after the last escalation step."""
    calendar = plan.calendar
    first_offset = max(plan.reminder_offsets, default=0)
    last_step = max((s.after_working_days for s in plan.escalation), default=0)
    first = min(calendar.add_working_days(calendar.local(p.deadline).date(), -first_offset) for p in plan.phases)
    last = max(calendar.add_working_days(calendar.local(p.deadline).date(), last_step + 1) for p in plan.phases)
    # Hourly from 07:00 to 18:00, widened to the sending window when an office sets a wider one.
    start = min(dt.time(7, 0), calendar.work_start.replace(minute=0))
    end = max(dt.time(18, 0), calendar.work_end)
    return Window(calendar.at(first, start), calendar.at(last, end))


def _phase_run_time(plan: Plan) -> dt.time:
    """08:00, or the sending window's start when 08:00 is outside it (a run then would only plan)."""
    calendar = plan.calendar
    return dt.time(8, 0) if calendar.work_start <= dt.time(8, 0) < calendar.work_end else calendar.work_start


def phase_days(plan: Plan, phase: Phase) -> list[dt.datetime]:
    """Mornings when a phase has something to do: each reminder offset, then each escalation step."""
    calendar = plan.calendar
    deadline = calendar.local(phase.deadline).date()
    days = {calendar.add_working_days(deadline, -k) for k in plan.reminder_offsets}
    days.add(calendar.add_working_days(deadline, 1))
    days |= {calendar.add_working_days(deadline, s.after_working_days) for s in plan.escalation if s.after_working_days > 0}
    run_at = _phase_run_time(plan)
    return [calendar.at(day, run_at) for day in sorted(days)]


def _stamp(instant: dt.datetime) -> str:
    return instant.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def tick_rrule(plan: Plan) -> str:
    window = campaign_window(plan)
    local_start = window.start.strftime("%Y%m%dT%H%M%S")
    return f"DTSTART;TZID={TIMEZONE}:{local_start}\nRRULE:FREQ=HOURLY;UNTIL={_stamp(window.end)}"


def phase_rrule(plan: Plan, phase: Phase) -> str:
    days = phase_days(plan, phase)
    first = days[0].strftime("%Y%m%dT%H%M%S")
    rdates = ",".join(d.strftime("%Y%m%dT%H%M%S") for d in days)
    # RDATE in wall time, no TZID: dateutil (and so Prefect's RRuleSchedule) refuses a TZID there,
    # and Prefect reads the dates in the schedule's timezone.
    return f"DTSTART;TZID={TIMEZONE}:{first}\nRDATE:{rdates}"


def describe_schedules(plan: Plan) -> dict:
    window = campaign_window(plan)
    return {
        "tick": {"window": [window.start.isoformat(), window.end.isoformat()], "rrule": tick_rrule(plan)},
        "phases": {p.id: {"kind": p.kind, "runs": [d.isoformat() for d in phase_days(plan, p)], "rrule": phase_rrule(plan, p)} for p in plan.phases},
    }
