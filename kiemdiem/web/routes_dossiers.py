"""A unit's dossier for one phase as one ZIP, for its office: the archive ``kiemdiem dossier`` makes
(checklist, the submitted files each under its document type, generated documents, manifest.json).

The dossier is assembled in the folder the tick keeps it in (``<output>/<campaign>/dossiers/<unit>/<phase>/``,
``steps.assemble_dossiers``), with the same inputs the tick gives it, so a download brings that
folder up to date and an unchanged dossier is not rebuilt. Offices and administrators only, for
the units they may see (the unit page's check: 404 otherwise).
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import StreamingResponse

from kiemdiem.errors import KiemdiemError
from kiemdiem.plan import Phase, Plan
from kiemdiem.steps import CONSOLIDATING_KINDS
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.dossiers import assemble_dossier, latest_summaries
from kiemdiem.web.auth import audit
from kiemdiem.web.context import Viewer, campaign_of, client_ip, get_ctx, get_uow, get_viewer, require_role
from kiemdiem.web.queries import scoped_unit

router = APIRouter()

CHUNK = 1 << 20


def dossier_phases(plan: Plan, unit_kind: str) -> list[Phase]:
    """The phases a unit has a dossier for: those it takes part in that ask for documents (as the tick)."""
    return [p for p in plan.phases_for_kind(unit_kind) if p.documents]


def download_name(unit_name: str, phase_name: str) -> str:
    """"Hồ sơ <unit> - <phase>.zip", without characters a file name may not hold."""
    text = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', " ", f"Hồ sơ {unit_name} - {phase_name}")
    return re.sub(r"\s+", " ", text).strip()[:150] + ".zip"


def content_disposition(unit_code: str, phase_id: str, name: str) -> str:
    """An ASCII fallback (the archive's own name) and the Vietnamese name as ``filename*`` (RFC 6266/5987)."""
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{unit_code}_{phase_id}") + ".zip"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/c/{campaign_id}/u/{code}/dossier/{phase_id}.zip")
def dossier_zip(campaign_id: str, code: str, phase_id: str, request: Request, viewer: Viewer = Depends(get_viewer),
                uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    require_role(viewer, "admin", "office")
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        raise HTTPException(404)
    ctx = get_ctx(request)
    plan = ctx.status.plan_for(uow, campaign_id)
    phase = next((p for p in dossier_phases(plan, unit.kind) if p.id == phase_id), None)
    if phase is None:
        raise HTTPException(404)
    now = ctx.now()
    consolidating = phase.kind in CONSOLIDATING_KINDS
    # As the tick assembles it (the same folder, the same inputs): the subtree's consolidation for a
    # consolidating phase only; made by ``now``, as ``kiemdiem dossier --at`` (a replayed campaign).
    subtree = latest_summaries(uow, campaign_id, unit.code, now) if consolidating else {}
    out_dir = ctx.store.settings.output_dir / campaign_id / "dossiers" / unit.code / phase.id
    try:
        result = assemble_dossier(
            ctx.store, plan, campaign_id, unit.code, phase.id, out_dir, now,
            subtree.get(unit.code) if consolidating else None, subtree=(subtree or None) if consolidating else None,
        )
    except KiemdiemError as exc:
        raise HTTPException(500, f"Chưa lập được hồ sơ {unit.name} – {phase.name}: {exc}. Xin báo bộ phận kỹ thuật.") from None
    audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.dossier", subject=f"{unit.code}:{phase.id}", now=now,
          detail={"unit": unit.code, "phase": phase.id, "sha256": result.sha256, "rebuilt": result.changed, "ip": client_ip(request)})
    uow.commit()
    # Opened once: a tick replacing the archive meanwhile does not change what this answer streams.
    handle = open(result.archive, "rb")
    size = os.fstat(handle.fileno()).st_size

    def chunks():
        with handle:
            while block := handle.read(CHUNK):
                yield block

    headers = {"Content-Disposition": content_disposition(unit.code, phase.id, download_name(unit.name, phase.name)),
               "Content-Length": str(size)}
    return StreamingResponse(chunks(), media_type="application/zip", headers=headers)
