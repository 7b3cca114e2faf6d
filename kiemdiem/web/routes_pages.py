"""Pages: campaigns, the overview, the unit tree, a unit, its consolidation, people, the audit log.

Pages that change while a campaign runs have a fragment (``/live/...``) or a JSON status
that the page script fetches every few seconds, so they refresh without a full reload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from fastapi import APIRouter, Depends, HTTPException, Request
from markupsafe import Markup
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from kiemdiem.calendar import format_date
from kiemdiem.catalogue import UNIT_KINDS
from kiemdiem.consolidation import field_label
from kiemdiem.errors import InvalidInput, KiemdiemError
from kiemdiem.rules.base import LEVEL_NAMES, LEVELS, NOT_EVALUATED_NAMES, NOT_EVALUATED_REASONS
from kiemdiem.status import STATES
from kiemdiem.steps import CONSOLIDATING_KINDS
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Unit
from kiemdiem.store.organization import list_campaigns
from kiemdiem.store.submissions import submission_history
from kiemdiem.web import routes_dossiers
from kiemdiem.web.auth import ROLES, invite_user, may_invite
from kiemdiem.web.context import (
    STATE_LABELS,
    Viewer,
    WebContext,
    as_viewer,
    campaign_of,
    checked_form,
    get_ctx,
    get_uow,
    get_viewer,
    render,
    render_text,
    require_role,
)
from kiemdiem.web.queries import (
    NO_STATE,
    StatusView,
    TreeFilter,
    TreeUnit,
    ancestors_in_scope,
    audit_actions,
    audit_events,
    awaiting_decision,
    checklist,
    compare_versions,
    kinds_in,
    late_phases,
    latest_snapshots,
    notices_sent,
    overview,
    overdue_contacts,
    refusal_problems,
    scoped_unit,
    snapshot_versions,
    timeline,
    tree_rows,
    unit_members,
    unit_paths,
    unit_notices,
    unit_results,
    user_access,
    users_in_scope,
)

router = APIRouter()
# The dossier downloads (their own module) are served with the pages: app.py includes this router.
router.include_router(routes_dossiers.router)

MAX_QUERY_LENGTH = 100


def resolve_root(view: StatusView, viewer: Viewer, code: str | None) -> TreeUnit:
    unit = view.unit(code or viewer.unit_code)
    if unit is None or not viewer.sees(unit.path):
        raise HTTPException(404)
    return unit


# ----------------------------------------------------------------------------- campaigns, overview


@router.get("/campaigns")
def campaigns(request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    items = [c for c in list_campaigns(uow) if c.id == viewer.campaign_id]
    return render(request, "campaigns.html", viewer=viewer, campaigns=items)


OVERVIEW_MARKER = "<!--overview-->"


def overview_context(ctx: WebContext, uow: UnitOfWork, viewer: Viewer, campaign_id: str, root: str | None) -> tuple[dict, bytes]:
    """The overview's context and its live part, rendered and encoded once per status view, scope, day and counts sent."""
    view = ctx.view(uow, campaign_id)
    root_unit = resolve_root(view, viewer, root)
    summary = overview(view, root_unit.code)
    sent = notices_sent(uow, campaign_id, root_unit.path, whole_campaign=root_unit.parent_code is None)
    now = ctx.now()
    context = dict(
        viewer=viewer, campaign_id=campaign_id, view=view, plan=view.plan, root=root_unit, ov=summary, sent=sent,
        line=timeline(view.plan, view.now), states=STATES, now=now,
    )
    # The overdue units' contacts are read when the part is rendered: a sent escalation changes ``sent``
    # (a new render); an address edited by a re-import shows with the next submission or the next day.
    key = ("overview", view.key, root_unit.code, json.dumps(sent, sort_keys=True, default=str), format_date(now))
    live = ctx.renders.get_or_make(key, lambda: render_text(
        ctx, "_overview_live.html", contacts=overdue_contacts(uow, campaign_id, summary.overdue), **context,
    ).encode())
    return context, live


@router.get("/c/{campaign_id}")
async def overview_page(campaign_id: str, request: Request, root: str | None = None):
    def work(uow: UnitOfWork, viewer: Viewer) -> Response:
        campaign_of(viewer, campaign_id)
        ctx = get_ctx(request)
        context, live = overview_context(ctx, uow, viewer, campaign_id, root)
        page = render_text(ctx, "overview.html", section="overview", live=Markup(OVERVIEW_MARKER), **context)
        head, tail = page.split(OVERVIEW_MARKER, 1)
        return Response(b"".join((head.encode(), live, tail.encode())), media_type="text/html; charset=utf-8")

    return await run_in_threadpool(as_viewer, request, work)


@router.get("/c/{campaign_id}/live/overview")
async def overview_live(campaign_id: str, request: Request, root: str | None = None):
    def work(uow: UnitOfWork, viewer: Viewer) -> Response:
        campaign_of(viewer, campaign_id)
        _context, live = overview_context(get_ctx(request), uow, viewer, campaign_id, root)
        return fragment(request, live)

    return await run_in_threadpool(as_viewer, request, work)


def fragment(request: Request, html: str | bytes) -> Response:
    """An HTML fragment for the page script; 304 when the script already has this one."""
    body = html.encode() if isinstance(html, str) else html
    etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


# ----------------------------------------------------------------------------- tree


def tree_filter(view: StatusView, phase: str, state: str, kind: str, q: str) -> TreeFilter:
    phase_ids = {p.id for p in view.plan.phases}
    return TreeFilter(
        phase=phase if phase in phase_ids else "",
        state=state if state in STATES or state == NO_STATE else "",
        kind=kind if kind in UNIT_KINDS else "",
        q=q.strip()[:MAX_QUERY_LENGTH],
    )


TREE_MARKER = "<!--tree-rows-->"


@router.get("/c/{campaign_id}/tree")
async def tree_page(campaign_id: str, request: Request, root: str | None = None, phase: str = "", state: str = "", kind: str = "",
                    q: str = ""):
    """Every unit of the viewer's subtree; the rows are rendered and encoded once per status view and filter."""

    def work(uow: UnitOfWork, viewer: Viewer) -> Response:
        campaign_of(viewer, campaign_id)
        ctx = get_ctx(request)
        view = ctx.view(uow, campaign_id)
        root_unit = resolve_root(view, viewer, root)
        flt = tree_filter(view, phase, state, kind, q)
        def make() -> tuple[bytes, int, int]:
            rows = tree_rows(view, root_unit.code, flt)
            matched = sum(1 for r in rows if r.match)
            return render_text(ctx, "_tree_rows.html", rows=rows, campaign_id=campaign_id, flt=flt).encode(), len(rows), matched

        body, count, matched = ctx.renders.get_or_make(("tree", view.key, root_unit.code, flt), make)
        page = render_text(
            ctx, "tree.html", viewer=viewer, campaign_id=campaign_id, section="tree", root=root_unit, flt=flt,
            plan=view.plan, kinds=kinds_in(view, root_unit.code), states=STATES, no_state=NO_STATE, body=Markup(TREE_MARKER),
            count=count, matched=matched,
            percent=view.subtree_percent(root_unit.code, flt.phase or None), view=view,
        )
        head, tail = page.split(TREE_MARKER, 1)
        return Response(b"".join((head.encode(), body, tail.encode())), media_type="text/html; charset=utf-8")

    return await run_in_threadpool(as_viewer, request, work)


@router.get("/c/{campaign_id}/tree/status.json")
async def tree_status(campaign_id: str, request: Request, root: str | None = None, phase: str = ""):
    """Each unit's state and subtree percent, for the tree page to refresh its badges in place; without a
    phase, also the states of its phases, which the page's state filter reads (``StatusView.states``);
    under ``late``, the phases each late unit is late in, which its row names (``late_phases``)."""

    def work(uow: UnitOfWork, viewer: Viewer) -> Response:
        campaign_of(viewer, campaign_id)
        ctx = get_ctx(request)
        view = ctx.view(uow, campaign_id)
        root_unit = resolve_root(view, viewer, root)
        flt = tree_filter(view, phase, "", "", "")
        etag = f'"{view.etag}-{root_unit.id}-{flt.phase}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        memo_key = ("status.json", root_unit.code, flt.phase)
        body = view.memo.get(memo_key)
        if body is None:
            phase_id = flt.phase or None
            units = {
                u.code: [view.state(u.code, phase_id), view.subtree_percent(u.code, phase_id)]
                + ([] if phase_id else [sorted(view.states(u.code))])
                for u in view.subtree_units(root_unit.code)
            }
            # The phases each late unit is late in, as its row names them ([state, label, title] each).
            late = {
                u.code: [[p.state, p.label, p.title] for p in found]
                for u in view.subtree_units(root_unit.code) if (found := late_phases(view, u.code, phase_id))
            }
            body = json.dumps({"labels": STATE_LABELS, "units": units, "late": late}, ensure_ascii=False,
                              separators=(",", ":")).encode()
            with view.lock:
                view.memo[memo_key] = body
        return Response(body, media_type="application/json", headers=headers)

    return await run_in_threadpool(as_viewer, request, work)


# ----------------------------------------------------------------------------- unit


def unit_context(ctx: WebContext, uow: UnitOfWork, viewer: Viewer, campaign_id: str, code: str) -> dict:
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        raise HTTPException(404)
    view = ctx.view(uow, campaign_id)
    members = unit_members(uow, unit)
    history = submission_history(uow, campaign_id, unit.id)
    member_names = {m.id: (m.code, m.full_name) for m in members}
    children = [u for u in view.subtree_units(unit.code) if u.depth == unit.depth + 1]
    member_results, org_results = unit_results(uow, unit)
    return dict(
        viewer=viewer, campaign_id=campaign_id, unit=unit, view=view, plan=view.plan,
        checklist=checklist(view, unit, members, history), history=history, members=members, member_names=member_names,
        refusals=refusal_problems(uow, campaign_id, history),
        children=children, notices=unit_notices(uow, unit), member_results=member_results, org_results=org_results,
        unit_state=view.state(unit.code), unit_percent=view.subtree_percent(unit.code),
    )


@router.get("/c/{campaign_id}/u/{code}")
def unit_page(campaign_id: str, code: str, request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    return unit_response(request, uow, viewer, campaign_id, code)


def unit_response(request: Request, uow: UnitOfWork, viewer: Viewer, campaign_id: str, code: str, status_code: int = 200,
                  decision: dict | None = None) -> Response:
    """The unit page; ``decision``: a cancellation form refused (what was typed, why) or done."""
    ctx = get_ctx(request)
    context = unit_context(ctx, uow, viewer, campaign_id, code)
    unit = context["unit"]
    return render(
        request, "unit.html", status_code=status_code, section="unit", ancestors=ancestors_in_scope(uow, unit, viewer.unit_path),
        ics_token=ctx.codec.ics_token(campaign_id, unit.code), roles=ROLES, may_invite=may_invite,
        invited=request.query_params.get("invited"), decision=decision or decided(request), **context,
    )


def decided(request: Request) -> dict | None:
    """The decision a redirect reports (``?decided=…&subject=…[&later=1]``): the page says it was recorded."""
    kind = request.query_params.get("decided")
    if kind not in ("cancel", "override"):
        return None
    return {"kind": kind, "done": True, "subject": request.query_params.get("subject", "")[:MAX_QUERY_LENGTH],
            "later": request.query_params.get("later") == "1"}


@router.get("/c/{campaign_id}/u/{code}/live")
def unit_live(campaign_id: str, code: str, request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    ctx = get_ctx(request)
    return fragment(request, render_text(ctx, "_unit_live.html", **unit_context(ctx, uow, viewer, campaign_id, code)))


# ----------------------------------------------------------------------------- consolidation


def level_rows(section: dict) -> list[dict]:
    levels = section.get("levels", {}) if section else {}
    return [
        {"code": lv, "name": LEVEL_NAMES[lv], "count": (levels.get(lv) or {}).get("count", 0) or 0,
         "percent": (levels.get(lv) or {}).get("percent")}
        for lv in LEVELS
    ]


@router.get("/c/{campaign_id}/u/{code}/consolidation")
def consolidation_page(campaign_id: str, code: str, request: Request, a: int | None = None, b: int | None = None,
                       viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    return consolidation_response(request, uow, viewer, campaign_id, code, a, b)


def consolidation_response(request: Request, uow: UnitOfWork, viewer: Viewer, campaign_id: str, code: str,
                           a: int | None = None, b: int | None = None, status_code: int = 200, decision: dict | None = None) -> Response:
    """The consolidation page; ``decision``: an approval form refused (what was typed, why) or done."""
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        raise HTTPException(404)
    versions = snapshot_versions(uow, campaign_id, unit.id)
    plan = get_ctx(request).status.plan_for(uow, campaign_id)
    context = dict(viewer=viewer, campaign_id=campaign_id, unit=unit, section="consolidation", versions=versions,
                   ancestors=ancestors_in_scope(uow, unit, viewer.unit_path), decision=decision or decided(request),
                   status_code=status_code, plan=plan,
                   # the unit's dossier per phase, for its office (the dossier route's own check is the same)
                   dossier_phases=routes_dossiers.dossier_phases(plan, unit.kind) if viewer.is_staff else [])
    if not versions:
        return render(request, "consolidation.html", latest=None, first_consolidation=first_consolidation(plan), **context)
    by_version = {s.version: s for s in versions}
    latest = versions[0]
    payload = latest.payload or {}
    children = latest_snapshots(uow, campaign_id, unit.path, children_of=unit.id)
    old = by_version.get(a) if a is not None else (versions[1] if len(versions) > 1 else None)
    new = by_version.get(b) if b is not None else latest
    changes, changes_source, compare_error = None, None, None
    if old is not None and new is not None and old.version != new.version:
        if old.version > new.version:
            old, new = new, old
        adjacent_stored = new.diff if new.version == old.version + 1 and new.diff else None
        try:
            changes, whole = compare_versions(uow, campaign_id, unit, old, new)
            changes_source = "computed" if whole else "computed_own"
            if not whole and adjacent_stored:
                changes, changes_source = adjacent_stored, "stored"
        except (KeyError, TypeError, AttributeError):
            if adjacent_stored:
                changes, changes_source = adjacent_stored, "stored"
            else:
                compare_error = "Không so sánh được hai phiên bản này (dữ liệu tổng hợp không đúng định dạng)."
    members = payload.get("members") or {}
    organizations = payload.get("organizations") or {}
    decided_by = ((payload.get("unit") or {}).get("result") or {}).get("decided_by")  # a unit code: shown by its name
    decider = uow.session.scalar(select(Unit.name).where(Unit.campaign_id == campaign_id, Unit.code == decided_by)) if decided_by else None
    about = {f.get("unit_code") for f in payload.get("findings") or () if f.get("severity") == "error" and not f.get("overridden")}
    decidable = {code for code, path in unit_paths(uow, campaign_id, about).items() if viewer.decides_for(path)} if viewer.is_staff else set()
    # Members the snapshot counts as without a result, whose branch did send a proposal: waiting for the
    # committee's decision, not for the branch (read from the results, which the snapshot does not carry).
    missing = payload.get("missing_results") or {}
    missing_members = [m for m in missing.get("members") or () if isinstance(m, dict)]
    child_missing = {child.code: [m for m in ((snap.payload or {}).get("missing_results") or {}).get("members") or () if isinstance(m, dict)]
                     for child, snap in children}
    anyone_missing = missing_members or any(child_missing.values())
    proposals = awaiting_decision(uow, campaign_id, unit.path) if anyone_missing else {}
    awaiting = [dict(m, proposed_level=proposals[m.get("member_id")]) for m in missing_members if m.get("member_id") in proposals]
    nothing = [m for m in missing_members if m.get("member_id") not in proposals]
    child_rows = []
    for child, snap in children:
        child_members = (snap.payload or {}).get("members") or {}
        child_rows.append({"unit": child, "snapshot": snap, "members": child_members, "levels": level_rows(child_members),
                           "awaiting": sum(1 for m in child_missing[child.code] if m.get("member_id") in proposals)})
    proposed_levels = {lv: sum(1 for m in awaiting if m["proposed_level"] == lv) for lv in LEVELS}
    return render(
        request, "consolidation.html", latest=latest, payload=payload, members=members, organizations=organizations,
        member_levels=level_rows(members), org_levels=level_rows(organizations), child_rows=child_rows,
        old=old, new=new, changes=changes, changes_source=changes_source, compare_error=compare_error,
        field_label=field_label, not_evaluated_names=NOT_EVALUATED_NAMES, not_evaluated_reasons=NOT_EVALUATED_REASONS,
        level_names=LEVEL_NAMES, decidable=decidable, decider=decider, awaiting=awaiting, missing_nothing=nothing,
        missing_orgs=missing.get("organizations") or [], proposed_levels={lv: n for lv, n in proposed_levels.items() if n}, **context,
    )


def first_consolidation(plan) -> dt.datetime | None:
    """When the first consolidation can come: the earliest moment a consolidating phase's preceding
    phases are all past their deadline (``steps.consolidation_due``); None when the plan has none."""
    moments = [max(plan.phase(p).deadline for p in phase.after) for phase in plan.phases
               if phase.kind in CONSOLIDATING_KINDS and phase.after]
    return min(moments) if moments else None


# ----------------------------------------------------------------------------- people, audit


def users_form(request: Request, uow: UnitOfWork, viewer: Viewer, campaign_id: str, status_code: int = 200, *,
               form: FormData | None = None, error: str | None = None, unit_error: str | None = None):
    """The people page with the invitation form (again, with what was typed and why it was refused)."""
    users = users_in_scope(uow, campaign_id, viewer.unit_path)
    return render(
        request, "users.html", status_code=status_code, viewer=viewer, campaign_id=campaign_id, section="users",
        users=users, access=user_access(uow, campaign_id, viewer.unit_path), now=get_ctx(request).now(),
        roles=[r for r in ROLES if may_invite(viewer.role, r)],
        invited=request.query_params.get("invited") if form is None else None, error=error, unit_error=unit_error,
        form={k: str(v) for k, v in form.items() if k != "csrf_token"} if form is not None else {},
    )


@router.get("/c/{campaign_id}/users")
def users_page(campaign_id: str, request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    require_role(viewer, "admin", "office")
    return users_form(request, uow, viewer, campaign_id)


@router.post("/c/{campaign_id}/users/invite")
def invite(campaign_id: str, request: Request, form: FormData = Depends(checked_form),
           viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    require_role(viewer, "admin", "office")
    ctx = get_ctx(request)
    code = str(form.get("unit") or "").strip()
    role = str(form.get("role") or "unit")
    if not may_invite(viewer.role, role):  # the form never offers it
        raise HTTPException(404)
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        # A typo keeps what was typed; the same answer for a unit outside the subtree, so nothing there is confirmed.
        return users_form(request, uow, viewer, campaign_id, 404, form=form,
                          unit_error=f"Không có đơn vị mã {code} trong phạm vi của đồng chí. Hãy kiểm tra lại mã đơn vị."
                          if code else "Hãy nhập mã đơn vị.")
    try:
        invitation = invite_user(
            uow, campaign_id=campaign_id, unit_code=unit.code, email=str(form.get("email") or ""),
            full_name=str(form.get("full_name") or ""), now=ctx.now(), hours=ctx.settings.invite_hours,
            base_url=ctx.submit_url, actor=viewer.email, role=role,
        )
    except KiemdiemError as exc:
        uow.rollback()
        message = "; ".join(p.reason for p in exc.problems) if isinstance(exc, InvalidInput) else str(exc)
        return users_form(request, uow, viewer, campaign_id, 422, form=form, error=message)
    uow.commit()
    back = str(form.get("back") or "")
    target = f"/c/{campaign_id}/u/{unit.code}" if back == "unit" else f"/c/{campaign_id}/users"
    return RedirectResponse(f"{target}?invited={invitation.email}", status_code=303)


@router.get("/c/{campaign_id}/audit")
def audit_page(campaign_id: str, request: Request, action: str = "", viewer: Viewer = Depends(get_viewer),
               uow: UnitOfWork = Depends(get_uow)):
    """The campaign's event log: administrators at the campaign's root only (it is campaign-wide)."""
    campaign_of(viewer, campaign_id)
    require_role(viewer, "admin")
    if not viewer.at_root:
        raise HTTPException(404)
    actions = audit_actions(uow, campaign_id)
    return render(
        request, "audit.html", viewer=viewer, campaign_id=campaign_id, section="audit",
        events=audit_events(uow, campaign_id, action if action in actions else None), actions=actions, action=action,
    )
