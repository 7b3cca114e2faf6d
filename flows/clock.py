"""A flow run's "now": its parameter if given, else its scheduled start time, never the wall clock
(a scheduled run may start a second early and must still work on the hour it was meant for)."""

from __future__ import annotations

import datetime as dt

from prefect.runtime import flow_run

from tasks.context import to_instant


def run_now(now: str | None) -> dt.datetime:
    if now:
        return to_instant(now)
    scheduled = flow_run.scheduled_start_time
    if scheduled is not None:
        return scheduled if isinstance(scheduled, dt.datetime) else dt.datetime.fromisoformat(str(scheduled))
    return dt.datetime.now(dt.timezone.utc)  # started by hand, outside any schedule
