"""Prefect tasks of the distributed tick: split the tree, plan a batch of subtrees, assemble given dossiers.

Plain (sync) tasks: a part flow calls them in order, and a tick without the part deployment
submits them to its task runner (threads), one batch each.
"""

from __future__ import annotations

import datetime as dt

from prefect import task
from prefect.cache_policies import NONE

from kiemdiem import steps
from kiemdiem.store.ticks import touched_units
from tasks.context import get_plan, get_store, to_instant


@task(name="split-tree", cache_policy=NONE)
def split_tree(campaign_id: str, parts: int) -> dict:
    """Batches of subtree roots of about equal work, the units above them, and each unit's batch."""
    return steps.split_tree(get_store(), campaign_id, parts)


@task(name="plan-subtrees", cache_policy=NONE)
def plan_subtrees(campaign_id: str, now: str | dt.datetime, phase_ids: list[str], roots: list[str], units: list[str] | None = None) -> int:
    """Reminders and escalations due now for the subtrees of ``roots`` and for ``units``."""
    store = get_store()
    return steps.plan_units(store, get_plan(store, campaign_id), campaign_id, to_instant(now), phase_ids, roots=roots, units=units or ())


@task(name="dossier-units", cache_policy=NONE)
def dossier_units(campaign_id: str, now: str | dt.datetime, rerun: list[str]) -> list[str]:
    """The units whose dossiers this tick re-assembles: new submissions since the last tick, and ``rerun``."""
    return sorted(set(rerun) | set(touched_units(get_store(), campaign_id, to_instant(now))))


@task(name="assemble-unit-dossiers", cache_policy=NONE)
def assemble_unit_dossiers(campaign_id: str, now: str | dt.datetime, unit_codes: list[str]) -> list[dict]:
    """Re-assemble exactly these units' dossiers (unchanged ones are left alone)."""
    if not unit_codes:
        return []
    store = get_store()
    return steps.assemble_dossiers(store, get_plan(store, campaign_id), campaign_id, to_instant(now), list(unit_codes))
