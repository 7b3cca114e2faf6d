from __future__ import annotations

import asyncio
import datetime as dt

from prefect import task
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact
from prefect.cache_policies import NONE

from kiemdiem import steps
from kiemdiem.status import STATE_NAMES
from tasks.context import get_plan, get_store, to_instant


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() and ch.isascii() else "-" for ch in raw).strip("-")


MAX_OVERDUE_ROWS = 1000  # rows of the tick's overdue table artifact; a last row counts the rest


@task(name="publish-progress", cache_policy=NONE)
async def publish_progress(campaign_id: str, phase_ids: list[str], now: str | dt.datetime) -> list[dict]:
    """A progress artifact per phase and one table of overdue units for the tick."""
    store = get_store()
    rows = await asyncio.to_thread(steps.progress, store, get_plan(store, campaign_id), campaign_id, to_instant(now), phase_ids)
    overdue = []
    for row in rows:
        await acreate_progress_artifact(
            progress=row["percent"],
            key=artifact_key(campaign_id, row["phase_id"], "progress"),
            description=f"{row['name']}: " + ", ".join(f"{STATE_NAMES[s]} {n}" for s, n in row["states"].items() if n),
        )
        overdue += [{"giai_doan": row["phase_id"], "don_vi": o["unit"], "ten": o["name"], "con_thieu": o["missing"]} for o in row["overdue"]]
    if len(overdue) > MAX_OVERDUE_ROWS:  # a national morning can have 100,000: the dashboard lists them all
        rest = overdue[MAX_OVERDUE_ROWS:]
        overdue = overdue[:MAX_OVERDUE_ROWS] + [{
            "giai_doan": "", "don_vi": "", "con_thieu": sum(r["con_thieu"] for r in rest),
            "ten": f"… và {len(rest)} lượt đơn vị quá hạn khác (xem đầy đủ trên bảng điều khiển)",
        }]
    await acreate_table_artifact(
        key=artifact_key(campaign_id, "overdue-units"),
        table=overdue or [{"giai_doan": "", "don_vi": "", "ten": "Không có đơn vị quá hạn", "con_thieu": 0}],
        description=f"Đơn vị quá hạn lúc {to_instant(now):%d/%m/%Y %H:%M}",
    )
    return rows
