"""A committee's decisions recorded from the dashboard: cancelling a result, approving a finding.

The same store functions as ``kiemdiem result cancel`` and ``kiemdiem finding override``, then
the same incremental consolidation, so the page shows the new version at once. Only staff, for
units below their own (``Viewer.decides_for``); who decided and why are typed (the committee and
its document), the signed-in person is the audit log's actor.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from kiemdiem.errors import InvalidInput, KiemdiemError
from kiemdiem.rules.base import finding_title, unit_of_key
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Member, Unit
from kiemdiem.store.results import cancel_result, override_finding
from kiemdiem.store.snapshots import consolidate_campaign
from kiemdiem.web.auth import audit
from kiemdiem.web.context import Viewer, campaign_of, checked_form, client_ip, get_ctx, get_uow, get_viewer
from kiemdiem.web.queries import scoped_unit
from kiemdiem.web.routes_pages import consolidation_response, unit_response

log = logging.getLogger(__name__)
router = APIRouter()

MAX_TEXT = 256  # by and reason: one line each, as the CLI takes them


def _typed(form: FormData, name: str) -> str:
    return " ".join(str(form.get(name) or "").split())[:MAX_TEXT]


def _reason_of(exc: KiemdiemError) -> str:
    return "; ".join(p.reason for p in exc.problems) if isinstance(exc, InvalidInput) else str(exc)


def _rerun(request: Request, campaign_id: str, changed: set[str], why: str, actor: str) -> bool:
    """The incremental consolidation the decision calls for, so the page shows its effect. The
    decision is stored and logged already: if this run fails, the next tick's picks it up."""
    ctx = get_ctx(request)
    try:
        with ctx.store.uow() as uow:
            plan = ctx.status.plan_for(uow, campaign_id)
        consolidate_campaign(ctx.store, plan, campaign_id, ctx.now(), changed_units=changed, reason=why[:MAX_TEXT], actor=actor)
    except (KiemdiemError, SQLAlchemyError):
        log.exception("consolidation after a decision in %s failed; the next tick runs it", campaign_id)
        return False
    finally:
        ctx.status.touch(campaign_id)
    return True


@router.post("/c/{campaign_id}/u/{code}/results/cancel")
def cancel(campaign_id: str, code: str, request: Request, form: FormData = Depends(checked_form),
           viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    """Cancel the current result of a member of the unit (``member``) or of the unit itself (no ``member``)."""
    campaign_of(viewer, campaign_id)
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None or not viewer.decides_for(unit.path):
        raise HTTPException(404)
    member_code = _typed(form, "member") or None
    by, reason = _typed(form, "by"), _typed(form, "reason")
    typed = {"kind": "cancel", "member": member_code or "", "by": by, "reason": reason}
    if member_code is not None and uow.session.scalar(
        select(Member.id).where(Member.campaign_id == campaign_id, Member.member_code == member_code, Member.unit_id == unit.id)
    ) is None:
        raise HTTPException(404)  # the form offers the unit's own members only
    now = get_ctx(request).now()
    try:
        outcome = cancel_result(uow, campaign_id, member_code=member_code, unit_code=None if member_code else unit.code,
                                by=by, reason=reason, now=now)
    except KiemdiemError as exc:
        uow.rollback()
        return unit_response(request, uow, viewer, campaign_id, unit.code, 422, decision={**typed, "error": _reason_of(exc)})
    audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.result_cancel", subject=outcome.subject, now=now,
          detail={"unit": unit.code, "by": by, "reason": reason, "row_id": outcome.cancelled_row_id, "ip": client_ip(request)})
    uow.commit()
    rerun = _rerun(request, campaign_id, {outcome.changed_unit}, f"hủy kết quả của {outcome.subject} ({by}: {reason})", viewer.email)
    query = urlencode({"decided": "cancel", "subject": outcome.subject, **({} if rerun else {"later": "1"})})
    return RedirectResponse(f"/c/{campaign_id}/u/{unit.code}?{query}#results", status_code=303)


@router.post("/c/{campaign_id}/u/{code}/findings/override")
def approve(campaign_id: str, code: str, request: Request, form: FormData = Depends(checked_form),
            viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    """Approve a finding listed on the unit's consolidation page (``key``): it stays listed, no longer a breach."""
    campaign_of(viewer, campaign_id)
    page = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    key = _typed(form, "key")
    about = uow.session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == (unit_of_key(key) or "")))
    if page is None or about is None or not about.path.startswith(page.path) or not viewer.decides_for(about.path):
        raise HTTPException(404)
    by, reason = _typed(form, "by"), _typed(form, "reason")
    now = get_ctx(request).now()
    try:
        override = override_finding(uow, campaign_id, key, by, reason, now)
    except KiemdiemError as exc:
        uow.rollback()
        return consolidation_response(request, uow, viewer, campaign_id, page.code, status_code=422,
                                      decision={"kind": "override", "key": key, "by": by, "reason": reason, "error": _reason_of(exc)})
    audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.finding_override", subject=key, now=now,
          detail={"unit": about.code, "by": override.by, "reason": override.reason, "ip": client_ip(request)})
    uow.commit()
    rerun = _rerun(request, campaign_id, set(), f"chấp thuận vi phạm {finding_title(key, about.name)} ({by}: {reason})", viewer.email)
    query = urlencode({"decided": "override", "subject": key, **({} if rerun else {"later": "1"})})
    return RedirectResponse(f"/c/{campaign_id}/u/{page.code}/consolidation?{query}#findings", status_code=303)
