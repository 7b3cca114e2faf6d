"""A classification list the ingest refuses is not a delivery (SQLite and PostgreSQL).

Lists are read at submission; the ingest reads them again against the tree of its time. When the
tree changed in between (here DV004 moved from VP2 to VP1 by a re-import), the ingest refuses the
list. The item is then owed again everywhere an office looks: status, reminders, the dossier's
checklist. The file stays stored, and the same file sent again once the tree is put right is a
new attempt, not a no-op.
"""

from __future__ import annotations

from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.dossier import build_dossier
from kiemdiem.store.dossiers import load_dossier_input
from kiemdiem.store.models import Notice, Submission
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.queries import campaign_status, load_deliveries
from kiemdiem.store.results import ingest_results
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.submission import item_key
from tests.support import SMALL_MEMBERS, ict, write_small_org

PHASE = "chi_bo_kiem_diem"  # deadline 05/12/2023 17:00; reminders 5, 3, 1 and 0 working days before
LIST = "tong_hop_xep_loai_dang_vien"
VP2_LIST = "Mã đảng viên,Tự xếp loại,Chi bộ đề xuất\nDV004,HTTNV,HTTNV\nDV005,,\n".encode()
KEY = item_key("VP2", PHASE, LIST, None)
MOVED = SMALL_MEMBERS.replace("DV004,Lê Xuân Tiến,VP2", "DV004,Lê Xuân Tiến,VP1")


def _import(store, directory, at, members=SMALL_MEMBERS):
    units, members_path = write_small_org(directory, members=members)
    with store.uow() as uow:
        import_organization(uow, "c187", units, members_path, at)
        uow.commit()


def _submit(store, plan, at):
    with store.uow() as uow:
        outcome = record_submission(uow, store.blobs, plan, "c187", "VP2", LIST, [IncomingFile("tong_hop.csv", data=VP2_LIST)], at, "web", actor="vp2")
        uow.commit()
    return outcome


def _deliveries(store, now):
    with store.uow() as uow:
        return load_deliveries(uow, "c187", now)


def _owed_in_status(store, plan, now) -> dict[bool, tuple[bool, int]]:
    """Whether VP2 still owes the list, and how many required items it has delivered (its subtree
    count, which the partitioned status counts in SQL), whole-tree and partitioned."""
    owed = {}
    for partitioned in (False, True):
        with store.uow() as uow:
            status = campaign_status(uow, plan, "c187", now, partitioned=partitioned, max_members=2)
        (row,) = [r for r in status.for_unit("VP2") if r.phase_id == PHASE]
        owed[partitioned] = (any(item.key == KEY for item in row.missing), status.subtree["VP2"][PHASE][1])
    return owed


def _checklist_status(store, plan, now) -> str:
    with store.uow() as uow:
        dossier = build_dossier(load_dossier_input(uow, plan, "c187", "VP2", PHASE, now))
    (entry,) = [e for e in dossier.checklist["items"] if e["doc_type"] == LIST]
    return entry["status"]


def test_a_list_refused_by_the_ingest_is_owed_again_and_its_resend_is_read(store, plan_187, tmp_path):
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", ict(2023, 11, 20, 8))
        uow.commit()
    _import(store, tmp_path / "org", ict(2023, 11, 20, 8))
    first = _submit(store, plan_187, ict(2023, 12, 1, 9))
    assert KEY in _deliveries(store, ict(2023, 12, 1, 9, 10))
    _import(store, tmp_path / "moved", ict(2023, 12, 1, 9, 30), members=MOVED)

    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 1, 10))
    assert [r.submission_id for r in report.refused] == [first.submission_id]

    monday = ict(2023, 12, 4, 8)  # one working day before the deadline
    assert KEY not in _deliveries(store, monday)
    assert _owed_in_status(store, plan_187, monday) == {False: (True, 0), True: (True, 0)}
    assert _checklist_status(store, plan_187, monday) == "missing"
    steps.plan_reminders(store, plan_187, "c187", monday, [PHASE])
    steps.compose(store, plan_187, "c187", monday)
    with store.uow() as uow:
        notices = uow.session.scalars(select(Notice).where(Notice.item_key == KEY, Notice.kind == "reminder")).all()
        # In this morning's digest to each of VP2's two addresses.
        assert sorted(n.recipient for n in notices) == ["bithu.vp2@sct.example.vn", "vp2@sct.example.vn"]
        assert all(n.cancelled_at is None and n.outbox_id is not None for n in notices)
        refused = uow.session.get(Submission, first.submission_id)
        assert refused.refused_at is not None  # kept, marked

    # The tree is put right, and VP2 sends the very same file again: a new submission, read this time.
    _import(store, tmp_path / "back", ict(2023, 12, 4, 9))
    again = _submit(store, plan_187, ict(2023, 12, 4, 10))
    assert again.created and again.submission_id != first.submission_id and again.supersedes_id == first.submission_id
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 4, 10, 5))
    assert report.ingested == [again.submission_id] and report.refused == []
    later = ict(2023, 12, 4, 11)
    delivery = _deliveries(store, later)[KEY]
    assert delivery.first_received_at == ict(2023, 12, 4, 10) and delivery.versions == 1
    assert _checklist_status(store, plan_187, later) == "present"
    assert _owed_in_status(store, plan_187, later) == {False: (False, 1), True: (False, 1)}
    # An identical third send is a no-op again: the second was not refused.
    assert not _submit(store, plan_187, ict(2023, 12, 4, 12)).created


def _earlier_readable_list(store, plan, tmp_path):
    """The campaign, and VP2's first list (DV005 only), sent on 30/11 and read."""
    with store.uow() as uow:
        create_campaign(uow, plan, "c187", ict(2023, 11, 20, 8))
        uow.commit()
    _import(store, tmp_path / "org", ict(2023, 11, 20, 8))
    with store.uow() as uow:
        outcome = record_submission(
            uow, store.blobs, plan, "c187", "VP2", LIST,
            [IncomingFile("dau_tien.csv", data="Mã đảng viên,Chi bộ đề xuất\nDV005,HTNV\n".encode())], ict(2023, 11, 30, 9), "web",
        )
        uow.commit()
    ingest_results(store, plan, "c187", ict(2023, 11, 30, 10))
    return outcome


def test_an_earlier_readable_list_still_counts_when_a_later_one_is_refused(store, plan_187, tmp_path):
    readable = _earlier_readable_list(store, plan_187, tmp_path)
    _submit(store, plan_187, ict(2023, 12, 1, 9))
    _import(store, tmp_path / "moved", ict(2023, 12, 1, 9, 30), members=MOVED)
    assert len(ingest_results(store, plan_187, "c187", ict(2023, 12, 1, 10)).refused) == 1

    delivery = _deliveries(store, ict(2023, 12, 1, 11))[KEY]
    assert (delivery.first_received_at, delivery.last_received_at, delivery.versions) == (ict(2023, 11, 30, 9), ict(2023, 11, 30, 9), 1)
    with store.uow() as uow:
        dossier = build_dossier(load_dossier_input(uow, plan_187, "c187", "VP2", PHASE, ict(2023, 12, 1, 11)))
    archived = [f for f in dossier.files if f.path.endswith(".csv")]
    assert [f.path.rsplit("/", 1)[1] for f in archived] == ["dau_tien.csv"]  # the refused list is not archived as current
    assert readable.created


def test_a_reminder_cancelled_for_a_list_later_refused_goes_out_after_all(store, plan_187, tmp_path):
    """The list arrives between a tick's planning and its composing (the reminder is cancelled as
    delivered), then the next ingest refuses it: the same reminder goes out after all."""
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", ict(2023, 11, 20, 8))
        uow.commit()
    _import(store, tmp_path / "org", ict(2023, 11, 20, 8))
    monday = ict(2023, 12, 4, 8)  # one working day before the deadline
    steps.plan_reminders(store, plan_187, "c187", monday, [PHASE])
    _submit(store, plan_187, ict(2023, 12, 4, 8, 1))
    assert steps.compose(store, plan_187, "c187", ict(2023, 12, 4, 8, 2)).cancelled_delivered == 2  # both VP2 addresses
    _import(store, tmp_path / "moved", ict(2023, 12, 4, 8, 30), members=MOVED)
    assert len(ingest_results(store, plan_187, "c187", ict(2023, 12, 4, 9)).refused) == 1

    steps.plan_reminders(store, plan_187, "c187", ict(2023, 12, 4, 9, 5), [PHASE])  # the same step: nothing new to plan
    steps.compose(store, plan_187, "c187", ict(2023, 12, 4, 9, 5))
    with store.uow() as uow:
        notices = uow.session.execute(
            select(Notice.recipient, Notice.cancelled_at, Notice.outbox_id).where(Notice.item_key == KEY, Notice.kind == "reminder")
        ).all()
    assert sorted(n.recipient for n in notices) == ["bithu.vp2@sct.example.vn", "vp2@sct.example.vn"]
    assert all(n.cancelled_at is None and n.outbox_id is not None for n in notices)


def test_a_reopened_reminder_is_cancelled_again_when_an_earlier_list_still_counts(store, plan_187, tmp_path):
    _earlier_readable_list(store, plan_187, tmp_path)
    # A reminder planned for the list before it counted (planned by hand: the planner sees it delivered).
    with store.uow() as uow:
        uow.session.add(Notice(
            campaign_id="c187", recipient="vp2@sct.example.vn", recipient_name="VP2", kind="reminder", step=1, item_key=KEY,
            unit_id=_unit_id(uow, "VP2"), phase_id=PHASE, doc_type=LIST, planned_at=ict(2023, 11, 30, 8),
        ))
        uow.commit()
    assert steps.compose(store, plan_187, "c187", ict(2023, 12, 4, 8)).cancelled_delivered == 1
    _submit(store, plan_187, ict(2023, 12, 4, 8, 1))
    _import(store, tmp_path / "moved", ict(2023, 12, 4, 8, 30), members=MOVED)
    assert len(ingest_results(store, plan_187, "c187", ict(2023, 12, 4, 9)).refused) == 1
    report = steps.compose(store, plan_187, "c187", ict(2023, 12, 4, 9, 5))
    assert report.digests == 0
    with store.uow() as uow:
        (notice,) = uow.session.execute(select(Notice.cancelled_at, Notice.outbox_id).where(Notice.item_key == KEY)).all()
    assert notice.cancelled_at is not None and notice.outbox_id is None


def _unit_id(uow, code):
    from kiemdiem.store.models import Unit

    return uow.session.scalar(select(Unit.id).where(Unit.campaign_id == "c187", Unit.code == code))
