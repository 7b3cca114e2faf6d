"""One tick for the province preset, and the share of its time that Prefect itself takes.

The same campaign state is copied twice. One copy runs the tick as a Prefect flow run
(local ephemeral server, tasks per phase step); the other runs the very same steps without
Prefect (`kiemdiem.steps.tick_once`). Prefect's share = 1 - steps / flow. Target: under 25%.
The tick is on a reminder morning (Hà Tĩnh plan, 28/11/2022 08:00), so it plans, composes
and sends the province's reminder digests to a null SMTP server in another process.

    python -m bench.tick_bench
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from prefect import flow

from bench.common import null_smtp_server, peak_rss_mib, save
from flows.tick import tick
from kiemdiem import steps
from kiemdiem.plan import load_plan
from kiemdiem.settings import SmtpSettings, StoreSettings, plans_dir
from kiemdiem.store.db import open_store
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.synth import generate
from tests.support import ict

CAMPAIGN = "tinh"
NOW = ict(2022, 11, 28, 8)


def prepare(work: Path) -> Path:
    plan = load_plan(plans_dir() / "KH-DUK-HT-2022.yaml")
    files = generate("province", 1, work / "org", campaign_year=plan.year)
    home = work / "base"
    store = open_store(StoreSettings(home=home))
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, ict(2022, 11, 20))
        import_organization(uow, CAMPAIGN, files.units, files.members, ict(2022, 11, 20))
        uow.commit()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return home


def clone(home: Path, target: Path) -> Path:
    shutil.copytree(home, target)
    return target


@flow
async def warm_up() -> int:
    return 1


def run_flow(home: Path, port: int) -> tuple[float, dict]:
    os.environ["KIEMDIEM_HOME"] = str(home)
    os.environ["KIEMDIEM_SMTP_PORT"] = str(port)

    async def main():
        await warm_up()  # the local Prefect server starts on first use; its start-up is not the tick's
        started = time.perf_counter()
        result = await tick(CAMPAIGN, NOW.isoformat())
        return time.perf_counter() - started, result

    return asyncio.run(main())


def run_steps(home: Path, port: int) -> tuple[float, dict]:
    store = open_store(StoreSettings(home=home))
    plan = load_plan(plans_dir() / "KH-DUK-HT-2022.yaml")
    started = time.perf_counter()
    result = asyncio.run(steps.tick_once(store, plan, CAMPAIGN, NOW, SmtpSettings(host="127.0.0.1", port=port)))
    return time.perf_counter() - started, result


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="kiemdiem-bench-tick-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    base = prepare(work)
    with null_smtp_server() as port:
        steps_seconds, plain = run_steps(clone(base, work / "plain"), port)
        flow_seconds, flowed = run_flow(clone(base, work / "flow"), port)
    assert plain["sent"].sent == flowed["sent"]["sent"] > 0, (plain["sent"], flowed["sent"])
    share = max(0.0, 1 - steps_seconds / flow_seconds)
    save(
        "tick",
        {
            "preset": "province",
            "now": NOW.isoformat(),
            "messages_sent": flowed["sent"]["sent"],
            "notices_planned": plain["reminders"],
            "steps_without_prefect_s": round(steps_seconds, 2),
            "tick_flow_s": round(flow_seconds, 2),
            "prefect_share": round(share, 3),
            "target": "prefect share < 0.25",
            "note": "flow time excludes the ephemeral server's start-up; both runs start from the same copied state",
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
