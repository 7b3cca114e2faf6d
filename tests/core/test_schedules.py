"""The deployments' schedules follow the plan's calendar and the office's sending window."""

import datetime as dt

from deployments.schedules import campaign_window, phase_days, phase_rrule
from kiemdiem.plan import load_plan
from tests.support import PLANS

PLAN = PLANS / "187-KH-DU-2023.yaml"


def local(instant: dt.datetime) -> tuple[str, str]:
    return instant.strftime("%d/%m/%Y"), instant.strftime("%H:%M")


def test_a_phase_runs_on_each_reminder_and_escalation_morning_by_hand():
    plan = load_plan(PLAN, work_hours=(dt.time(7, 30), dt.time(17, 0)))
    runs = [local(d) for d in phase_days(plan, plan.phase("chi_bo_kiem_diem"))]
    # Deadline Tue 05/12/2023; reminders 5, 3, 1, 0 working days before; the day after; escalation after 2 and 5.
    days = ["28/11/2023", "30/11/2023", "04/12/2023", "05/12/2023", "06/12/2023", "07/12/2023", "12/12/2023"]
    assert runs == [(d, "08:00") for d in days]
    window = campaign_window(plan)
    assert window.start.strftime("%H:%M") == "07:00" and window.end.strftime("%H:%M") == "18:00"


def test_a_later_sending_window_moves_the_phase_runs_into_it():
    plan = load_plan(PLAN, work_hours=(dt.time(9, 0), dt.time(11, 0)))
    runs = phase_days(plan, plan.phase("chi_bo_kiem_diem"))
    assert {local(d)[1] for d in runs} == {"09:00"}
    assert "T090000" in phase_rrule(plan, plan.phase("chi_bo_kiem_diem"))


def test_a_wider_sending_window_widens_the_hourly_tick():
    plan = load_plan(PLAN, work_hours=(dt.time(6, 30), dt.time(19, 0)))
    window = campaign_window(plan)
    assert window.start.strftime("%H:%M") == "06:00" and window.end.strftime("%H:%M") == "19:00"
    assert {local(d)[1] for d in phase_days(plan, plan.phase("chi_bo_kiem_diem"))} == {"08:00"}


def test_prefect_takes_every_seed_plans_schedules_and_runs_them_at_local_time():
    """`kiemdiem serve` builds a deployment per phase from these: Prefect must accept them and fire
    at 08:00 Vietnam time (dateutil refused 'RDATE;TZID=…', so serve failed for every plan)."""
    import asyncio  # noqa: PLC0415
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    from prefect.client.schemas.schedules import RRuleSchedule  # noqa: PLC0415
    from prefect.server.schemas.schedules import RRuleSchedule as ServerSchedule  # noqa: PLC0415

    from deployments.schedules import tick_rrule  # noqa: PLC0415

    async def fires(rule: str, start: dt.datetime) -> list[dt.datetime]:
        dates = ServerSchedule(rrule=rule, timezone="Asia/Ho_Chi_Minh").get_dates(n=50, start=start)
        return await dates if asyncio.iscoroutine(dates) else dates

    for path in sorted(PLANS.glob("*.yaml")):
        plan = load_plan(path)
        RRuleSchedule(rrule=tick_rrule(plan), timezone="Asia/Ho_Chi_Minh")
        for phase in plan.phases:
            rule = phase_rrule(plan, phase)
            RRuleSchedule(rrule=rule, timezone="Asia/Ho_Chi_Minh")
            expected = phase_days(plan, phase)
            got = asyncio.run(fires(rule, expected[0] - dt.timedelta(days=1)))
            assert [d.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).replace(tzinfo=None) for d in got] == [
                d.replace(tzinfo=None) for d in expected
            ], (path.name, phase.id)
