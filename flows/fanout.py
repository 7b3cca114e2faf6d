"""The distributed tick: one campaign's tick shared by several workers, split by subtree.

The tick (``flows/tick.py``, with ``fan_out`` > 1 or ``KIEMDIEM_TICK_PARTS`` > 1) collects,
takes results and consolidates itself, then splits the tree into batches of subtree roots
(the base organizations, ``kiemdiem.steps.split_tree``). Each batch becomes a run of the
``kiemdiem-tick-part/tick-part`` deployment, which any worker of the pool may take: it plans
the reminders and escalations of its subtrees and re-assembles their dossiers. Meanwhile the
tick plans the units above every batch. When every part is done, the tick composes and sends,
as the embedded tick does, so a recipient whose units span several batches still gets one
digest carrying all of them; the emails and the snapshots are those of the embedded tick.

Planning is idempotent (a notice is unique per recipient, kind, item and step), so a part
that dies half-way is simply done again. The tick watches its parts: a part that ended in a
failed or crashed state, whose worker stopped sending heartbeats, that no worker picked up in
time, or that outran ``part_timeout``, is marked crashed (or cancelled, if it never started)
and its batch is run by the tick itself. Without the part deployment (a local run, tests) the
batches run on the tick's own task runner instead.

Settings read from the environment of the tick: ``KIEMDIEM_TICK_PARTS`` (default 1: no
fan-out), ``KIEMDIEM_TICK_PART_TIMEOUT`` (seconds, default 1200), ``KIEMDIEM_TICK_PART_PICKUP``
(seconds a part may wait for a worker, default 300).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.futures import wait
from prefect.states import Cancelled, Crashed

from flows.clock import run_now
from kiemdiem import steps
from tasks.collect import collect_submissions
from tasks.consolidation import consolidate, finish_tick, take_results
from tasks.context import get_plan, get_store
from tasks.fanout import assemble_unit_dossiers, dossier_units, plan_subtrees, split_tree
from tasks.notify import compose_digests, send_outbox
from tasks.progress import publish_progress

PART_FLOW = "kiemdiem-tick-part"
PART_DEPLOYMENT = f"{PART_FLOW}/tick-part"
POLL_SECONDS = 1.0
DEFAULT_PART_TIMEOUT = 1200.0
DEFAULT_PICKUP_TIMEOUT = 300.0
HEARTBEAT_MISSES = 4  # a worker silent for this many heartbeat intervals (+ a little) is gone


def tick_parts_setting() -> int:
    return max(1, int(os.environ.get("KIEMDIEM_TICK_PARTS", "1") or 1))


def _seconds_setting(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@flow(name=PART_FLOW, description="Một phần của lượt xử lý: nhắc hạn, đôn đốc và hồ sơ của một nhóm đơn vị cơ sở")
async def tick_part(
    campaign_id: str, now: str, roots: list[str], phase_ids: list[str], dossier_units: list[str] | None = None,
    part: int = 0, parts: int = 1,
) -> dict:
    """One batch of subtrees: plan their reminders and escalations, re-assemble their dossiers.
    The tick that started it composes and sends once every part is done."""
    at = run_now(now).isoformat()
    planned = plan_subtrees(campaign_id, at, phase_ids, roots)
    dossiers = assemble_unit_dossiers(campaign_id, at, dossier_units or [])
    return {"part": part, "parts": parts, "roots": len(roots), "planned": planned, "dossiers": len(dossiers)}


@dataclass
class Part:
    index: int
    roots: list[str]
    dossier_units: list[str]
    run_id: object | None = None
    run_name: str | None = None
    outcome: dict = field(default_factory=dict)

    def parameters(self, campaign_id: str, at: str, phase_ids: list[str], parts: int) -> dict:
        return {
            "campaign_id": campaign_id, "now": at, "roots": self.roots, "phase_ids": phase_ids,
            "dossier_units": self.dossier_units, "part": self.index, "parts": parts,
        }


def submit_part_here(campaign_id: str, at: str, phase_ids: list[str], part: Part) -> list:
    """A part's work on the tick's own task runner (its batch was lost, or there is no part
    deployment): the futures of its planning and of its dossiers."""
    return [plan_subtrees.submit(campaign_id, at, phase_ids, part.roots), assemble_unit_dossiers.submit(campaign_id, at, part.dossier_units)]


async def fanned_tick(
    campaign_id: str, instant: dt.datetime, parts: int, part_timeout: float | None = None, on: str = "auto",
) -> dict:
    """The tick's steps, with planning and dossiers fanned out by subtree (see the module's docstring)."""
    logger = get_run_logger()
    at = instant.isoformat()
    store = get_store()
    plan = get_plan(store, campaign_id)
    collected = await collect_submissions(campaign_id, at)
    results = await take_results(campaign_id, at)
    open_ids = steps.phases_to_tick(store, plan, campaign_id, instant)
    first_run = any(
        plan.phase(p).kind in steps.CONSOLIDATING_KINDS and steps.consolidation_due(plan, p, instant) for p in open_ids
    )
    # One consolidation, here, under its lock: one version per change, whoever runs the parts.
    consolidated = await consolidate(campaign_id, at, results["changed_units"], first_run)
    split = split_tree(campaign_id, parts)
    owner = split["owner"]
    wanted = dossier_units(campaign_id, at, steps.rerun_units(consolidated))
    batches = [
        Part(i, roots, [c for c in wanted if owner.get(c) == i]) for i, roots in enumerate(split["batches"])
    ]
    rest_dossiers = [c for c in wanted if owner.get(c, -1) == -1]
    logger.info("Chia %d nhóm đơn vị cơ sở; lượt này tự xử lý %d đơn vị cấp trên", len(batches), len(split["rest"]))

    deployment = None if on == "tasks" else await _part_deployment()
    if deployment is None and on == "deployments":
        raise RuntimeError(f"Không có deployment {PART_DEPLOYMENT}: chạy `prefect deploy --all` hoặc dùng fan_out_on='tasks'")
    futures = []
    if deployment is not None:
        for part in batches:
            run = await run_deployment(
                PART_DEPLOYMENT, parameters=part.parameters(campaign_id, at, open_ids, len(batches)), timeout=0,
                flow_run_name=f"{campaign_id}-{instant:%Y%m%d-%H%M}-phan-{part.index + 1}-{len(batches)}",
            )
            part.run_id, part.run_name = run.id, run.name
    else:
        # No part deployment: the batches run on this flow run's task runner (threads).
        for part in batches:
            futures.append((part, *submit_part_here(campaign_id, at, open_ids, part)))

    # The committees above the batches: planned here while the parts run.
    rest = {
        "units": len(split["rest"]),
        "planned": plan_subtrees(campaign_id, at, open_ids, [], split["rest"]),
        "dossiers": len(assemble_unit_dossiers(campaign_id, at, rest_dossiers)),
    }
    if open_ids:
        await publish_progress(campaign_id, open_ids, at)

    if deployment is not None:
        await supervise(campaign_id, at, open_ids, batches, part_timeout)
    else:
        await asyncio.to_thread(wait, [f for _, *fs in futures for f in fs])
        for part, planned, dossiers in futures:
            part.outcome = {"state": "COMPLETED", "where": "task-runner", "planned": planned.result(), "dossiers": len(dossiers.result())}

    # Every batch is planned: one digest per recipient over the whole tree, then the mail.
    composed = await compose_digests(campaign_id, at)
    sent = await send_outbox(campaign_id, at)
    await finish_tick(campaign_id, at, {"sent": sent["sent"], "parts": len(batches)})
    return {
        "now": at, "collected": collected, "results": results, "consolidated": consolidated, "open_phases": open_ids,
        "parts": [{"part": p.index, "roots": p.roots, "run": p.run_name, **p.outcome} for p in batches],
        "rest": rest, "composed": composed, "sent": sent,
    }


async def _part_deployment():
    try:
        async with get_client() as client:
            return await client.read_deployment_by_name(PART_DEPLOYMENT)
    except ObjectNotFound:
        return None


async def supervise(campaign_id: str, at: str, phase_ids: list[str], parts: list[Part], part_timeout: float | None) -> None:
    """Wait for the part runs; run here the batch of any part that is lost, so the tick never hangs.
    A lost batch runs on the tick's task runner while the other parts are still watched: two
    parts lost with one worker are run again side by side."""
    logger = get_run_logger()
    timeout = part_timeout if part_timeout is not None else _seconds_setting("KIEMDIEM_TICK_PART_TIMEOUT", DEFAULT_PART_TIMEOUT)
    pickup = min(timeout, _seconds_setting("KIEMDIEM_TICK_PART_PICKUP", DEFAULT_PICKUP_TIMEOUT))
    started = time.monotonic()
    waiting = {p.index: p for p in parts}
    reruns: list[tuple[Part, object, object]] = []
    async with get_client() as client:
        while waiting:
            workers: dict[str, dict] = {}
            for part in list(waiting.values()):
                run = await client.read_flow_run(part.run_id)
                state = run.state
                worker = (run.labels or {}).get("prefect.worker.name")
                if state is not None and state.is_completed():
                    part.outcome = {"state": "COMPLETED", "where": "deployment", "worker": worker}
                    del waiting[part.index]
                    continue
                reason, replacement = None, None
                elapsed = time.monotonic() - started
                if state is not None and state.is_final():
                    reason = f"kết thúc ở trạng thái {state.type.value}"
                elif worker is not None and await _worker_gone(client, run.labels, workers):
                    reason, replacement = f"worker {worker} không còn gửi tín hiệu (heartbeat)", Crashed
                elif (state is None or state.is_scheduled()) and elapsed > pickup:
                    reason, replacement = f"không worker nào nhận sau {pickup:.0f} giây", Cancelled
                elif elapsed > timeout:
                    reason, replacement = f"quá thời hạn {timeout:.0f} giây", Crashed
                if reason is None:
                    continue
                if replacement is not None:
                    await client.set_flow_run_state(
                        part.run_id, replacement(message=f"Lượt xử lý chính tự chạy lại phần này: {reason}"), force=True
                    )
                logger.warning("Phần %d (%s) bị mất: %s; lượt xử lý chính tự chạy nhóm này", part.index + 1, part.run_name, reason)
                part.outcome = {
                    "state": replacement.__name__.upper() if replacement else state.type.value, "where": "rerun-here",
                    "worker": worker, "reason": reason,
                }
                reruns.append((part, *submit_part_here(campaign_id, at, phase_ids, part)))
                del waiting[part.index]
            if waiting:
                await asyncio.sleep(POLL_SECONDS)
    await asyncio.to_thread(wait, [f for _, *fs in reruns for f in fs])
    for part, planned, dossiers in reruns:
        part.outcome.update(planned=planned.result(), dossiers=len(dossiers.result()))


async def _worker_gone(client, labels: dict, cache: dict[str, dict]) -> bool:
    """The run's worker stopped sending heartbeats (its process or its machine is gone)."""
    pool = labels.get("prefect.work-pool.name")
    name = labels.get("prefect.worker.name")
    if not pool or not name:
        return False
    if pool not in cache:
        cache[pool] = {w.name: w for w in await client.read_workers_for_work_pool(pool)}
    worker = cache[pool].get(name)
    if worker is None or worker.last_heartbeat_time is None:
        return False
    interval = worker.heartbeat_interval_seconds or 30
    silent = (dt.datetime.now(dt.timezone.utc) - worker.last_heartbeat_time).total_seconds()
    return silent > HEARTBEAT_MISSES * interval + 5
