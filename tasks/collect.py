from __future__ import annotations

import asyncio
import datetime as dt

from prefect import task
from prefect.cache_policies import NONE

from kiemdiem import steps
from tasks.context import get_plan, get_store, to_instant


@task(name="collect-submissions", cache_policy=NONE)
async def collect_submissions(campaign_id: str, now: str | dt.datetime) -> dict:
    """Take the drop folder's files in; web uploads are already recorded by the portal."""
    store = get_store()
    return await asyncio.to_thread(steps.collect_submissions, store, get_plan(store, campaign_id), campaign_id, to_instant(now))
