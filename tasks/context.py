"""Per-process access to the store and a campaign's plan, built lazily from settings."""

from __future__ import annotations

import datetime as dt
import threading

from kiemdiem.calendar import parse_instant
from kiemdiem.plan import Plan, parse_plan
from kiemdiem.settings import reminder_settings, store_settings
from kiemdiem.store.db import Store, open_store
from kiemdiem.store.organization import get_campaign

_lock = threading.Lock()
_stores: dict[str, Store] = {}
_plans: dict[tuple[str, str], Plan] = {}


def get_store() -> Store:
    settings = store_settings()
    with _lock:
        store = _stores.get(settings.url)
        if store is None:
            store = _stores[settings.url] = open_store(settings)
        return store


def get_plan(store: Store, campaign_id: str) -> Plan:
    with store.uow() as uow:
        campaign = get_campaign(uow, campaign_id)
        # The sending window comes from the environment when a plan is parsed (KIEMDIEM_REMINDERS_WORK_*).
        key = (campaign_id, campaign.plan_hash, reminder_settings().work_hours)
        text = campaign.plan_text
    with _lock:
        plan = _plans.get(key)
        if plan is None:
            plan = _plans[key] = parse_plan(text, source=f"campaign {campaign_id}")
        return plan


def to_instant(now: str | dt.datetime) -> dt.datetime:
    return now if isinstance(now, dt.datetime) else parse_instant(now)
