"""A late result after the committee's consolidation: the next tick stores a new version for the
changed branch and its ancestors only, the offices receive the difference over real SMTP with the
right numbers, and the dossier archive is rebuilt with manifest checksums that match its files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile

import pytest
from sqlalchemy import func, select

from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.settings import SmtpSettings
from kiemdiem.store.models import Snapshot, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.snapshots import latest_snapshots
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, write_small_org

CAMPAIGN = "c187"
HEADER = "member_id,self_level,proposed_level,final_level,disciplined,sick_leave_months,absent,score,note\n"
# VP1: DV001 good, DV002 absent from the meeting (result later), DV003 exempt (not listed).
VP1_LIST = HEADER + "DV001,HTTNV,HTTNV,HTTNV,,0,,,\nDV002,,,,,0,x,,vắng mặt\n"
VP1_SUPPLEMENT = HEADER + "DV002,HTXSNV,HTXSNV,HTXSNV,,0,,,bổ sung\n"
# VP2: DV005 was admitted under six months ago (not evaluated), so only DV004.
VP2_LIST = HEADER + "DV004,HTTNV,HTTNV,HTTNV,,0,,,\n"
KC_LIST = HEADER + "DV006,HTTNV,HTTNV,HTTNV,,0,,,\nDV007,HTTNV,HTTNV,HTTNV,,0,,,\n"


def submit_list(store, plan, unit, text, at):
    with store.uow() as uow:
        record_submission(
            uow, store.blobs, plan, CAMPAIGN, unit, "tong_hop_xep_loai_dang_vien",
            [IncomingFile("tong_hop.csv", data=text.encode())], at, "web", phase_id="chi_bo_kiem_diem",
        )
        uow.commit()


def versions(store) -> dict[str, int]:
    with store.uow() as uow:
        rows = uow.session.execute(
            select(Unit.code, func.max(Snapshot.version)).join(Unit, Unit.id == Snapshot.unit_id).group_by(Unit.code)
        ).all()
    return dict(rows)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_late_result_reruns_ancestors_mails_diff_and_rebuilds_dossier(store, plan_187, tmp_path):
    units_csv, members_csv = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, CAMPAIGN, ict(2023, 11, 20))
        import_organization(uow, CAMPAIGN, units_csv, members_csv, ict(2023, 11, 20))
        uow.commit()
    submit_list(store, plan_187, "VP1", VP1_LIST, ict(2023, 12, 4, 10))
    submit_list(store, plan_187, "VP2", VP2_LIST, ict(2023, 12, 4, 10))
    submit_list(store, plan_187, "KC", KC_LIST, ict(2023, 12, 5, 10))

    with MailSink(tmp_path / "mail") as sink:
        smtp = SmtpSettings(host="127.0.0.1", port=sink.port)

        def tick(now):
            return asyncio.run(steps.tick_once(store, plan_187, CAMPAIGN, now, smtp))

        tick(ict(2023, 12, 5, 16))
        assert versions(store) == {}  # before the branches' deadline the committee has not consolidated
        first = tick(ict(2023, 12, 6, 8))
        assert first["consolidated"]["mode"] == "full"
        assert versions(store) == {"SCT": 1, "VP1": 1, "VP2": 1, "KC": 1}
        with store.uow() as uow:
            v1 = latest_snapshots(uow, CAMPAIGN)["SCT"]["payload"]
        assert v1["members"]["levels"]["HTTNV"]["count"] == 4
        assert v1["members"]["levels"]["HTXSNV"]["count"] == 0
        assert v1["members"]["not_evaluated"]["exempt"] == 1 and v1["members"]["not_evaluated"]["new_member"] == 1
        assert [m["member_id"] for m in v1["missing_results"]["members"]] == ["DV002"]
        before_diff = len(sink.received)

        submit_list(store, plan_187, "VP1", VP1_SUPPLEMENT, ict(2023, 12, 7, 10))
        late = tick(ict(2023, 12, 8, 8))
        assert late["results"]["changed_units"] == ["VP1"]
        assert late["consolidated"]["mode"] == "incremental"
        assert versions(store) == {"SCT": 2, "VP1": 2, "VP2": 1, "KC": 1}  # ancestors only
        diffs = [m for m in sink.received[before_diff:] if "thay đổi" in str(m.message["Subject"])]
        assert {r for m in diffs for r in m.rcpt_tos} == {"vanphong@sct.example.vn", "vp1@sct.example.vn"}
        root_mail = next(m for m in diffs if "vanphong@sct.example.vn" in m.rcpt_tos)
        body = root_mail.message.get_body(preferencelist=("plain",)).get_content()
        assert "Trần Thị Hoa" in body and "HTXSNV" in body
        assert "0 → 1" in body  # HTXSNV count at every level up to the root
        assert "tối đa" in body or "20%" in body  # the cap breach that appeared: 1 HTXSNV on 4 HTTNV allows 0

        with store.uow() as uow:
            v2 = latest_snapshots(uow, CAMPAIGN)["SCT"]["payload"]
        assert v2["members"]["levels"]["HTXSNV"]["count"] == 1 and v2["members"]["quota"]["max_allowed"] == 0
        assert any(f["rule"] == "cap_members" for f in v2["findings"])

    archive = store.settings.output_dir / CAMPAIGN / "dossiers" / "VP1" / "chi_bo_kiem_diem" / "VP1_chi_bo_kiem_diem.zip"
    assert archive.exists()
    with zipfile.ZipFile(archive) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        files = manifest["files"]
        assert any(f["doc_type"] == "tong_hop_xep_loai_dang_vien" for f in files)
        for entry in files:
            assert hashlib.sha256(bundle.read(entry["path"])).hexdigest() == entry["sha256"]
        listed = [f for f in files if f["doc_type"] == "tong_hop_xep_loai_dang_vien"]
        assert hashlib.sha256(VP1_SUPPLEMENT.encode()).hexdigest() in {f["sha256"] for f in listed}
    root_dossier = store.settings.output_dir / CAMPAIGN / "dossiers" / "SCT" / "dang_uy_bao_cao_khoi"
    assert (root_dossier / "thong_ke_xep_loai.xlsx").exists() and (root_dossier / "bao_cao_tong_hop.docx").exists()
