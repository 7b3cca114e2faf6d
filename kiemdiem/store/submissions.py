"""Recording submissions: one code path for the CLI, the drop folder and the web upload.

Files are written to the blob store (complete, by checksum) before the row that
points at them is committed. The newest submission of an item is current and
the older ones remain as history. Re-sending the current content is a no-op.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from kiemdiem.errors import NotFound, Refused
from kiemdiem.plan import Plan
from kiemdiem.store.blobs import BlobStore
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import EventLog, Member, Submission, SubmissionFile, Unit
from kiemdiem.store.results import STRUCTURED_DOC_TYPES, check_result_files
from kiemdiem.submission import content_key, display_filename, is_on_time, item_key, resolve_target


@dataclass(frozen=True)
class IncomingFile:
    filename: str
    path: Path | None = None
    data: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class SubmissionOutcome:
    submission_id: int
    created: bool  # False: identical to the current submission, nothing changed
    on_time: bool
    phase_id: str
    deadline: dt.datetime
    supersedes_id: int | None
    item_key: str
    unit_code: str
    current_id: int | None = None  # the item's current submission now (another one when this was recorded with an earlier time)
    # Other items of the unit already holding one of these very files (the wrong member's
    # self-review chosen, the minutes filed as the report): kept, and the sender is told.
    same_files_as: tuple[str, ...] = ()

    @property
    def is_current(self) -> bool:
        return self.current_id is None or self.current_id == self.submission_id


def find_unit(uow: UnitOfWork, campaign_id: str, code: str) -> Unit:
    unit = uow.session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == code))
    if unit is None:
        raise NotFound(f"đơn vị không tồn tại: '{code}'")
    return unit


def record_submission(
    uow: UnitOfWork,
    blobs: BlobStore,
    plan: Plan,
    campaign_id: str,
    unit_code: str,
    doc_type: str,
    files: list[IncomingFile],
    received_at: dt.datetime,
    source: str,
    *,
    member_code: str | None = None,
    phase_id: str | None = None,
    actor: str | None = None,
    part_of_current: bool = False,
) -> SubmissionOutcome:
    """Validate the item, store the files, and add a submission row (the caller commits).

    ``part_of_current`` (the drop folder): files that are all in the item's current submission
    are what a crash left behind while that submission's files were being moved out of the
    inbox, not a new submission of fewer files."""
    if not files:
        raise Refused("không có tệp nào được nộp")
    unit = find_unit(uow, campaign_id, unit_code)
    member = None
    if member_code is not None:
        member = uow.session.scalar(select(Member).where(Member.campaign_id == campaign_id, Member.member_code == member_code))
        if member is None or member.unit_id != unit.id:
            # One answer whether the member exists elsewhere or not at all: a unit's user learns
            # nothing about other units' members.
            raise NotFound(f"đảng viên '{member_code}' không sinh hoạt ở '{unit_code}'")
    target = resolve_target(plan, unit.kind, doc_type, member is not None, phase_id)
    key = item_key(unit.code, target.phase.id, doc_type, member.member_code if member else None)

    for incoming in files:
        size = len(incoming.data) if incoming.data is not None else incoming.path.stat().st_size if incoming.path is not None else None
        if not size:
            raise Refused(f"tệp '{incoming.filename}' rỗng (0 byte): không có nội dung để nhận")
    if doc_type in STRUCTURED_DOC_TYPES:  # a list must read as the ingest will read it
        contents = [incoming.data if incoming.data is not None else incoming.path.read_bytes() for incoming in files]
        check_result_files(uow, plan, campaign_id, unit.code, doc_type, [(f.filename, data) for f, data in zip(files, contents)])
        files = [IncomingFile(f.filename, data=data, content_type=f.content_type) for f, data in zip(files, contents)]

    stored: list[tuple[str, int, str, str | None]] = []
    for incoming in files:
        if incoming.data is not None:
            sha, size = blobs.put_bytes(incoming.data)
        else:
            sha, size = blobs.put_file(incoming.path)
        stored.append((sha, size, display_filename(incoming.filename), incoming.content_type))
    content = content_key([sha for sha, *_ in stored])

    session = uow.session
    of_item = select(Submission).where(Submission.campaign_id == campaign_id, Submission.item_key == key)
    newest_first = (Submission.received_at.desc(), Submission.id.desc())
    current = session.scalar(of_item.order_by(*newest_first).limit(1))
    # The same files again are a no-op, unless the ingest refused them: sent again (the tree
    # fixed since), they are a new attempt. The same files recorded at an earlier moment (``--at``)
    # are not sent again: they were delivered then, and go into the history below.
    if current is not None and current.refused_at is None and received_at >= current.received_at and (
        current.content_key == content
        or part_of_current and {sha for sha, *_ in stored} <= set(
            session.scalars(select(SubmissionFile.sha256).where(SubmissionFile.submission_id == current.id))
        )
    ):
        return SubmissionOutcome(current.id, False, current.on_time, target.phase.id, target.phase.deadline, current.supersedes_id, key, unit.code)
    # Recorded with an earlier time (``--at``) than the current submission: it goes into the
    # history at its place, and the current one stays current. Sent again, it changes nothing.
    later = session.scalar(of_item.where(Submission.received_at > received_at).order_by(*newest_first).limit(1))
    if later is not None:
        same = session.scalar(of_item.where(Submission.received_at == received_at, Submission.content_key == content).limit(1))
        if same is not None:
            return SubmissionOutcome(same.id, False, same.on_time, target.phase.id, target.phase.deadline, same.supersedes_id, key,
                                     unit.code, current_id=current.id)
        current = session.scalar(of_item.where(Submission.received_at <= received_at).order_by(*newest_first).limit(1))

    on_time = is_on_time(received_at, target.phase.deadline)
    # The unit's submissions by its index, then their files: a few hundred rows at most.
    same_files_as = tuple(session.scalars(
        select(Submission.item_key).distinct()
        .join(SubmissionFile, SubmissionFile.submission_id == Submission.id)
        .where(Submission.unit_id == unit.id, Submission.campaign_id == campaign_id, Submission.item_key != key,
               SubmissionFile.sha256.in_([sha for sha, *_ in stored]))
        .order_by(Submission.item_key)
    ))
    submission = Submission(
        campaign_id=campaign_id,
        unit_id=unit.id,
        phase_id=target.phase.id,
        doc_type=doc_type,
        member_id=member.id if member else None,
        item_key=key,
        content_key=content,
        received_at=received_at,
        on_time=on_time,
        source=source,
        submitted_by=actor,
        supersedes_id=current.id if current else None,
    )
    session.add(submission)
    session.flush()
    for sha, size, name, content_type in stored:
        session.add(SubmissionFile(submission_id=submission.id, sha256=sha, size=size, filename=name, content_type=content_type))
    session.add(
        EventLog(
            campaign_id=campaign_id,
            at=received_at,
            actor=actor or source,
            action="submission.received",
            subject=key,
            detail={"submission_id": submission.id, "on_time": on_time, "files": [s[0] for s in stored], "source": source},
        )
    )
    return SubmissionOutcome(submission.id, True, on_time, target.phase.id, target.phase.deadline, submission.supersedes_id, key, unit.code,
                             current_id=later.id if later is not None else submission.id, same_files_as=same_files_as)


def submission_history(uow: UnitOfWork, campaign_id: str, unit_id: int) -> list[tuple[Submission, list[SubmissionFile]]]:
    session = uow.session
    subs = list(
        session.scalars(
            select(Submission).where(Submission.campaign_id == campaign_id, Submission.unit_id == unit_id).order_by(Submission.received_at.desc(), Submission.id.desc())
        )
    )
    files: dict[int, list[SubmissionFile]] = {}
    if subs:
        for f in session.scalars(select(SubmissionFile).where(SubmissionFile.submission_id.in_([s.id for s in subs]))):
            files.setdefault(f.submission_id, []).append(f)
    return [(s, files.get(s.id, [])) for s in subs]
