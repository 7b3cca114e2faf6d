"""The plan format: the three seed plans load with exact deadlines; malformed plans are refused
with a problem naming the field and the reason. Pure and fast: no database, no wall clock."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from kiemdiem.catalogue import DOCUMENTS, PHASE_KINDS, UNIT_KINDS
from kiemdiem.errors import InvalidInput
from kiemdiem.plan import describe, load_plan, parse_plan

PLANS = Path(__file__).resolve().parents[2] / "plans"
VN = ZoneInfo("Asia/Ho_Chi_Minh")

SEED_FILES = ["187-KH-DU-2023.yaml", "KH-DUK-HT-2022.yaml", "897-CV-DUK-2021.yaml"]


def end_of(day: str) -> dt.datetime:
    """'05/12/2023' -> 2023-12-05 23:59:59 +07:00, how "trước ngày dd/mm/yyyy" is read."""
    d = dt.datetime.strptime(day, "%d/%m/%Y").date()
    return dt.datetime.combine(d, dt.time(23, 59, 59), tzinfo=VN)


def assert_deadline(plan, phase_id: str, day: str) -> None:
    phase = plan.phase(phase_id)
    expected = end_of(day)
    assert phase.deadline == expected, (phase_id, phase.deadline, expected)
    assert phase.deadline.utcoffset() == dt.timedelta(hours=7)
    d, m, y = day.split("/")
    assert phase.deadline.isoformat() == f"{y}-{m}-{d}T23:59:59+07:00"
    # the reading shown next to every deadline says how it was read
    assert "23:59:59" in phase.reading
    assert day in phase.reading
    assert "(giờ Việt Nam, UTC+07:00)" in phase.reading and "Asia/" not in phase.reading  # users read the zone, not its IANA name


# --- the seed plans ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kh187():
    return load_plan(PLANS / "187-KH-DU-2023.yaml")


@pytest.fixture(scope="module")
def hatinh():
    return load_plan(PLANS / "KH-DUK-HT-2022.yaml")


@pytest.fixture(scope="module")
def cv897():
    return load_plan(PLANS / "897-CV-DUK-2021.yaml")


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_plan_loads_and_is_well_formed(name):
    plan = load_plan(PLANS / name)
    assert plan.phases
    assert plan.timezone == "Asia/Ho_Chi_Minh"
    assert plan.reminder_offsets  # reminders configured
    assert plan.escalation  # an escalation ladder beyond the implicit parent step
    ids = [p.id for p in plan.phases]
    assert len(ids) == len(set(ids))
    for phase in plan.phases:
        assert phase.kind in PHASE_KINDS
        assert phase.applies_to and set(phase.applies_to) <= set(UNIT_KINDS)
        assert phase.source, f"{phase.id}: every phase quotes the line of the plan it comes from"
        assert phase.documents, f"{phase.id}: every phase names what is to be submitted"
        for req in phase.documents:
            assert req.doc_type in DOCUMENTS
        # lower levels (and prerequisites) come first
        for ref in phase.after:
            assert plan.phase(ref).deadline <= phase.deadline
    assert plan.content_hash and len(plan.content_hash) == 64
    # describe() is JSON-ready
    text = json.dumps(describe(plan), ensure_ascii=False)
    assert plan.number in text


def test_187_identity(kh187):
    assert kh187.id == "187-KH-DU-2023"
    assert kh187.number == "187-KH/ĐU"
    assert kh187.issuer == "Đảng ủy Sở Công Thương"
    assert kh187.superior == "Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh"
    assert kh187.year == 2023
    assert kh187.rule_set == "124/25"
    assert (kh187.signer.on_behalf, kh187.signer.title, kh187.signer.name) == ("T/M ĐẢNG ỦY", "PHÓ BÍ THƯ", "Lê Xuân Tiến")
    assert kh187.reminder_offsets == (5, 3, 1, 0)
    assert "Đảng bộ Khối CCQ và DN tỉnh (B/c)" in kh187.recipients
    assert "Các Chi bộ trực thuộc" in kh187.recipients
    assert kh187.evaluation_date == dt.date(2023, 12, 5)


def test_187_deadlines(kh187):
    assert_deadline(kh187, "chi_bo_kiem_diem", "05/12/2023")
    assert_deadline(kh187, "dang_uy_bao_cao_khoi", "10/12/2023")
    assert_deadline(kh187, "chi_bo_khac_phuc", "28/12/2023")
    assert_deadline(kh187, "dang_uy_khac_phuc", "31/12/2023")
    assert_deadline(kh187, "dang_vien_khac_phuc", "31/12/2023")


def test_187_relative_draft_deadlines(kh187):
    # 3 working days before Tue 05/12/2023: Mon 04/12 (1), Fri 01/12 (2), Thu 30/11 (3).
    assert_deadline(kh187, "chuan_bi_chi_bo", "30/11/2023")
    assert "thứ Năm" in kh187.phase("chuan_bi_chi_bo").reading
    # 3 working days before Sun 10/12/2023 (a day off): Fri 08/12, Thu 07/12, Wed 06/12.
    assert_deadline(kh187, "chuan_bi_dang_uy", "06/12/2023")


def test_187_weekend_deadline_reading_warns(kh187):
    # 10/12/2023 is a Sunday: the reading says so rather than silently moving the date
    reading = kh187.phase("dang_uy_bao_cao_khoi").reading
    assert "Chủ nhật" in reading and "ngày nghỉ" in reading
    assert "trước ngày 10/12/2023" in reading


def test_187_dossiers(kh187):
    branch = kh187.phase("chi_bo_kiem_diem")
    assert branch.kind == "branch_meeting" and branch.applies_to == ("chi_bo_truc_thuoc",)
    required_unit = {r.doc_type for r in branch.documents if r.required and not r.per_member}
    assert required_unit == {
        "bao_cao_kiem_diem_tap_the",
        "phieu_phan_tich_chat_luong",
        "bien_ban_hoi_nghi",
        "tong_hop_xep_loai_dang_vien",
        "ket_qua_xep_loai_chi_bo",
    }
    required_member = {r.doc_type for r in branch.documents if r.required and r.per_member}
    assert required_member == {"ban_kiem_diem_ca_nhan", "nhan_xet_noi_cu_tru", "nhan_xet_noi_sinh_hoat_tam_thoi"}
    optional = {r.doc_type for r in branch.documents if not r.required}
    assert optional == {
        "van_ban_khac",
        "bao_cao_thanh_tich",
        "bao_cao_tom_tat_thanh_tich",
        "bien_ban_xet_khen_thuong",
        "to_trinh_khen_thuong",
    }
    # HD 25 (which the plan applies) asks temporary members for their temporary branch's comment
    assert branch.requirement("nhan_xet_noi_sinh_hoat_tam_thoi", True).member_scope == "temporary"

    draft = kh187.phase("chuan_bi_chi_bo")
    assert draft.kind == "prepare_reports"
    assert draft.requirement("du_thao_bao_cao_kiem_diem", False).required

    committee = kh187.phase("dang_uy_bao_cao_khoi")
    assert committee.applies_to == ("dang_bo_co_so",)
    assert committee.submit_to == "superior"
    assert "chi_bo_kiem_diem" in committee.after

    members = kh187.phase("dang_vien_khac_phuc")
    assert members.requirement("ke_hoach_khac_phuc", True).required
    assert members.requirement("ban_cam_ket", True).required
    assert kh187.phase("chi_bo_khac_phuc").requirement("ke_hoach_khac_phuc", False).required
    assert kh187.phase("dang_uy_khac_phuc").requirement("ke_hoach_khac_phuc", False).required


def test_187_assignments(kh187):
    got = {(a.person, a.unit) for a in kh187.assignments}
    assert got == {
        ("Nguyễn Sỹ Chín", "Chi bộ Văn phòng 1"),
        ("Lê Xuân Tiến", "Chi bộ Văn phòng 2"),
        ("Nguyễn Trọng Thức", "Chi bộ Khuyến công"),
    }


def test_hatinh_identity(hatinh):
    assert hatinh.id == "KH-DUK-HT-2022"
    assert hatinh.rule_set == "132/21"
    assert hatinh.year == 2022
    assert hatinh.signer.name == "Nguyễn Trọng Vân"
    # the mailbox the plan names for soft copies is on the escalation ladder
    assert any("buixuandung@hatinh.dcs.vn" in s.emails for s in hatinh.escalation)
    # the plan's number is not in the source text, and the file says so
    assert "not in the source text" in (PLANS / "KH-DUK-HT-2022.yaml").read_text(encoding="utf-8")


def test_hatinh_deadlines(hatinh):
    assert_deadline(hatinh, "chi_bo_kiem_diem", "01/12/2022")
    assert_deadline(hatinh, "bo_phan_kiem_diem", "05/12/2022")
    assert_deadline(hatinh, "co_so_kiem_diem", "10/12/2022")
    assert_deadline(hatinh, "nop_quyet_dinh", "15/12/2022")
    assert_deadline(hatinh, "bao_cao_tong_ket", "15/12/2022")
    assert_deadline(hatinh, "ho_so_can_bo", "25/12/2022")
    assert_deadline(hatinh, "hoi_nghi_tong_ket", "31/12/2022")
    # The Khối's own decision on its base organizations (Mục B.2.1, Bước 3): the plan gives no
    # date; the campaign's last day, and the reading says so.
    assert_deadline(hatinh, "khoi_xep_loai_co_so", "31/12/2022")
    assert "không ghi hạn" in hatinh.phase("khoi_xep_loai_co_so").reading


def test_hatinh_relative_draft_deadlines(hatinh):
    # 3 working days before Thu 01/12/2022: Wed 30/11, Tue 29/11, Mon 28/11.
    assert_deadline(hatinh, "chuan_bi_chi_bo", "28/11/2022")
    # 3 working days before Mon 05/12/2022: Fri 02/12, Thu 01/12, Wed 30/11.
    assert_deadline(hatinh, "chuan_bi_bo_phan", "30/11/2022")
    # 3 working days before Sat 10/12/2022 (a day off): Fri 09/12, Thu 08/12, Wed 07/12.
    assert_deadline(hatinh, "chuan_bi_co_so", "07/12/2022")


def test_hatinh_order_and_dossiers(hatinh):
    assert hatinh.phase("chi_bo_kiem_diem").applies_to == ("chi_bo_co_so", "chi_bo_truc_thuoc")
    assert hatinh.phase("bo_phan_kiem_diem").applies_to == ("dang_bo_bo_phan",)
    assert hatinh.phase("co_so_kiem_diem").applies_to == ("dang_bo_co_so",)
    assert "chi_bo_kiem_diem" in hatinh.phase("bo_phan_kiem_diem").after
    assert {"chi_bo_kiem_diem", "bo_phan_kiem_diem"} <= set(hatinh.phase("co_so_kiem_diem").after)

    khoi = hatinh.phase("khoi_xep_loai_co_so")
    assert khoi.applies_to == ("cap_tren_co_so",) and "nop_quyet_dinh" in khoi.after
    assert [r.doc_type for r in khoi.documents] == ["quyet_dinh_xep_loai"]

    decisions = hatinh.phase("nop_quyet_dinh")
    assert set(decisions.applies_to) == {"dang_bo_co_so", "chi_bo_co_so"}
    assert {r.doc_type for r in decisions.documents} == {"quyet_dinh_xep_loai", "danh_sach_xep_loai_dang_vien", "bieu_mau_thong_ke"}

    temp = hatinh.phase("chi_bo_kiem_diem").requirement("nhan_xet_noi_sinh_hoat_tam_thoi", True)
    assert temp is not None and temp.member_scope == "temporary"

    leaders = hatinh.phase("ho_so_can_bo")
    assert leaders.kind == "leaders_dossier"
    assert leaders.requirement("ban_kiem_diem_ca_nhan", True).member_scope == "leaders"
    assert {r.doc_type for r in leaders.documents} == {
        "bao_cao_kiem_diem_tap_the",
        "danh_sach_xep_loai_can_bo",
        "ban_kiem_diem_ca_nhan",
        "phieu_bo_sung_ly_lich",
        "ke_khai_tai_san_bo_sung",
        "nhan_xet_noi_cu_tru",
        "bien_ban_hoi_nghi",
    }
    assert hatinh.phase("hoi_nghi_tong_ket").requirement("bien_ban_hoi_nghi_tong_ket", False)


def test_897_deadline_and_mailbox(cv897):
    assert cv897.number == "897-CV/ĐUK"
    assert cv897.issuer == "Đảng ủy Khối các cơ quan tỉnh Đồng Nai"
    assert cv897.rule_set == "132/21"
    assert cv897.issued_on == dt.date(2021, 10, 21)
    assert cv897.evaluation_date == dt.date(2021, 11, 25)
    assert_deadline(cv897, "bao_cao_khoi", "25/11/2021")
    # 3 working days before Thu 25/11/2021: Wed 24/11, Tue 23/11, Mon 22/11.
    assert_deadline(cv897, "chuan_bi", "22/11/2021")
    # "gửi kèm file qua địa chỉ Email của Ban Tổ chức Đảng ủy khối": letters to it are addressed to that office.
    assert [(s.to, s.emails, s.name) for s in cv897.escalation] == [("emails", ("duk.btc@dongnai.gov.vn",), "Ban Tổ chức Đảng ủy khối")]
    report = cv897.phase("bao_cao_khoi")
    assert set(report.applies_to) == {"dang_bo_co_so", "chi_bo_co_so"}
    assert report.requirement("quyet_dinh_xep_loai", False).required


def test_describe_shape(kh187):
    data = describe(kh187)
    branch = next(p for p in data["phases"] if p["id"] == "chi_bo_kiem_diem")
    assert branch["deadline"] == "2023-12-05T23:59:59+07:00"
    assert branch["deadline_local"] == "05/12/2023 23:59:59 +0700"
    assert "23:59:59" in branch["reading"] and "05/12/2023" in branch["reading"]
    docs = {(d["type"], d["per"]) for d in branch["documents"]}
    assert ("ban_kiem_diem_ca_nhan", "member") in docs
    assert data["reminder_offsets_working_days"] == [5, 3, 1, 0]
    assert [s["step"] for s in data["escalation"]] == list(range(1, len(data["escalation"]) + 1))


def test_explicit_hour_is_kept():
    plan = parse_plan(dump(with_phase(0, deadline={"date": "05/12/2023", "time": "17:00", "text": "trước 17 giờ ngày 05/12/2023"})))
    phase = plan.phase("chi_bo")
    assert phase.deadline == dt.datetime(2023, 12, 5, 17, 0, tzinfo=VN)
    assert "17:00" in phase.reading and "05/12/2023" in phase.reading


def test_iso_date_is_accepted():
    # YAML reads an unquoted 2023-12-05 as a date; it means the same day
    text = dump(BASE).replace('"05/12/2023"', "2023-12-05")
    assert parse_plan(text).phase("chi_bo").deadline == end_of("05/12/2023")


def test_relative_after_deadline():
    plan = parse_plan(dump(with_phase(1, deadline={"after": "chi_bo", "working_days": 2})))
    # 2 working days after Tue 05/12/2023: Wed 06/12, Thu 07/12
    assert plan.phase("dang_uy").deadline == end_of("07/12/2023")


def test_plan_swap_moves_relative_deadline():
    data = copy.deepcopy(BASE)
    data["calendar"] = {"extra_holidays": [{"date": "04/12/2023", "name": "Nghỉ theo kế hoạch"}]}
    plan = parse_plan(dump(data))
    # with Mon 04/12 off: Fri 01/12 (1), Thu 30/11 (2), Wed 29/11 (3)
    assert plan.phase("chuan_bi").deadline == end_of("29/11/2023")


# --- malformed plans --------------------------------------------------------------------------

BASE = {
    "id": "T-2023",
    "number": "1-KH/T",
    "title": "Kế hoạch thử",
    "issuer": "Đảng ủy thử",
    "year": 2023,
    "rule_set": "124/25",
    "phases": [
        {
            "id": "chi_bo",
            "name": "Chi bộ kiểm điểm",
            "kind": "branch_meeting",
            "deadline": "05/12/2023",
            "applies_to": ["chi_bo_truc_thuoc"],
            "documents": [{"type": "bao_cao_kiem_diem_tap_the"}],
        },
        {
            "id": "dang_uy",
            "name": "Đảng ủy báo cáo",
            "kind": "report_upward",
            "deadline": "10/12/2023",
            "applies_to": ["dang_bo_co_so"],
            "after": ["chi_bo"],
            "submit_to": "superior",
        },
        {
            "id": "chuan_bi",
            "name": "Dự thảo báo cáo",
            "kind": "prepare_reports",
            "deadline": {"before": "chi_bo", "working_days": 3},
            "applies_to": ["chi_bo_truc_thuoc"],
        },
    ],
}


def dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def with_top(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def with_phase(index: int, **changes):
    data = copy.deepcopy(BASE)
    data["phases"][index].update(changes)
    return data


def without(data, *path):
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


def refused(text: str):
    with pytest.raises(InvalidInput) as info:
        parse_plan(text, source="ke-hoach.yaml")
    problems = info.value.problems
    assert problems and all(p.source == "ke-hoach.yaml" for p in problems)
    return problems


def problem_at(text: str, field: str, *words: str):
    """The plan is refused with a problem on exactly `field` whose reason contains `words`."""
    problems = refused(text)
    matching = [p for p in problems if p.field == field]
    assert matching, f"no problem on {field!r}; got {[(p.field, p.reason) for p in problems]}"
    reason = " ".join(p.reason for p in matching)
    for word in words:
        assert word in reason, f"{word!r} not in {reason!r}"
    # the message a user sees names the field too
    assert field in str(matching[0])
    return matching[0]


def test_base_plan_is_valid():
    plan = parse_plan(dump(BASE))
    assert plan.phase("chuan_bi").deadline == end_of("30/11/2023")


def test_unknown_top_level_key():
    problem_at(dump(with_top(deadlines="05/12/2023")), "deadlines", "unknown key")


def test_unknown_key_inside_a_phase():
    problem_at(dump(with_phase(1, due="10/12/2023")), "phases[1].due", "unknown key")


def test_unknown_key_inside_a_document():
    problem_at(dump(with_phase(0, documents=[{"type": "bien_ban_hoi_nghi", "copies": 2}])), "phases[0].documents[0].copies", "unknown key")


def test_unknown_document_type():
    problem_at(
        dump(with_phase(0, documents=[{"type": "bien_ban_hoi_nghi"}, {"type": "bao_cao_mat"}])),
        "phases[0].documents[1].type",
        "bao_cao_mat",
        "danh mục",
    )


def test_document_listed_twice():
    problem_at(
        dump(with_phase(0, documents=[{"type": "bien_ban_hoi_nghi"}, {"type": "bien_ban_hoi_nghi"}])),
        "phases[0].documents[1].type",
        "hai lần",
    )


def test_bad_document_per():
    problem_at(dump(with_phase(0, documents=[{"type": "bien_ban_hoi_nghi", "per": "branch"}])), "phases[0].documents[0].per", "unit", "member")


def test_bad_member_scope():
    problem_at(
        dump(with_phase(0, documents=[{"type": "ban_kiem_diem_ca_nhan", "per": "member", "members": "everyone"}])),
        "phases[0].documents[0].members",
        "everyone",
    )


def test_deadline_before_a_phase_it_comes_after():
    # the committee (after: chi_bo) would be due 01/12, before the branches' 05/12
    problem = problem_at(dump(with_phase(1, deadline="01/12/2023")), "phases[1].after[0]", "01/12/2023", "05/12/2023", "chi_bo")
    assert "sớm hơn" in problem.reason


def test_dependency_loop_through_after():
    data = copy.deepcopy(BASE)
    data["phases"][0]["after"] = ["dang_uy"]  # chi_bo after dang_uy, dang_uy after chi_bo
    problem_at(dump(data), "phases[0]", "vòng lặp", "chi_bo", "dang_uy")


def test_dependency_loop_through_relative_deadlines():
    data = copy.deepcopy(BASE)
    data["phases"][0]["deadline"] = {"after": "chuan_bi", "working_days": 3}  # chuan_bi is before chi_bo
    problem_at(dump(data), "phases[0]", "vòng lặp", "chi_bo", "chuan_bi")


def test_phase_after_itself():
    problem_at(dump(with_phase(1, after=["dang_uy"])), "phases[1]", "vòng lặp")


@pytest.mark.parametrize("day", ["31/11/2023", "29/02/2023", "2023-02-30", "5 tháng 12"])
def test_impossible_date(day):
    problem_at(dump(with_phase(0, deadline=day)), "phases[0].deadline", day, "dd/mm/yyyy")


def test_impossible_date_in_long_form():
    problem_at(dump(with_phase(0, deadline={"date": "31/11/2023"})), "phases[0].deadline.date", "31/11/2023")


def test_leap_day_is_fine_in_a_leap_year():
    data = with_top(year=2024)
    data["phases"] = [dict(data["phases"][0], deadline="29/02/2024")]
    assert parse_plan(dump(data)).phase("chi_bo").deadline == end_of("29/02/2024")


@pytest.mark.parametrize("hour", ["25:00", "17h", "12:60"])
def test_bad_time(hour):
    problem_at(dump(with_phase(0, deadline={"date": "05/12/2023", "time": hour})), "phases[0].deadline.time", hour, "HH:MM")


def test_bad_time_on_relative_deadline():
    problem_at(dump(with_phase(2, deadline={"before": "chi_bo", "working_days": 3, "time": "25:00"})), "phases[2].deadline.time", "25:00")


def test_unknown_unit_kind():
    problem_at(dump(with_phase(0, applies_to=["chi_bo_truc_thuoc", "chi_doan"])), "phases[0].applies_to[1]", "chi_doan")


def test_no_unit_kind():
    problem_at(dump(with_phase(0, applies_to=[])), "phases[0].applies_to", "ít nhất")


def test_unknown_rule_set():
    problem_at(dump(with_top(rule_set="76/15")), "rule_set", "76/15", "124/25")


def test_unknown_phase_kind():
    problem_at(dump(with_phase(1, kind="party")), "phases[1].kind", "party", "report_upward")


def test_duplicate_phase_ids():
    problem_at(dump(with_phase(1, id="chi_bo")), "phases[1].id", "chi_bo", "lặp")


def test_relative_deadline_to_unknown_phase():
    problem_at(dump(with_phase(2, deadline={"before": "hoi_nghi", "working_days": 3})), "phases[2].deadline", "hoi_nghi", "không tồn tại")


def test_relative_deadline_with_both_directions():
    problem_at(
        dump(with_phase(2, deadline={"before": "chi_bo", "after": "dang_uy", "working_days": 3})),
        "phases[2].deadline",
        "after",
        "before",
    )


def test_relative_deadline_with_no_direction():
    problem_at(dump(with_phase(2, deadline={"working_days": 3})), "phases[2].deadline", "after", "before")


def test_negative_working_days():
    problem_at(dump(with_phase(2, deadline={"before": "chi_bo", "working_days": -3})), "phases[2].deadline.working_days", "âm")


def test_after_unknown_phase():
    problem_at(dump(with_phase(1, after=["chi_bo", "to_dang"])), "phases[1].after[1]", "to_dang", "không tồn tại")


def test_bad_submit_to():
    problem_at(dump(with_phase(1, submit_to="tinh_uy")), "phases[1].submit_to", "tinh_uy")


def test_missing_required_top_level_field():
    problem_at(dump(without(BASE, "issuer")), "issuer", "thiếu trường bắt buộc")


def test_missing_required_phase_field():
    problem_at(dump(without(BASE, "phases", 1, "name")), "phases[1].name", "thiếu trường bắt buộc")


def test_missing_phase_deadline():
    problem_at(dump(without(BASE, "phases", 0, "deadline")), "phases[0].deadline", "thiếu trường bắt buộc")


def test_escalation_to_emails_without_emails():
    data = with_top(escalation=[{"after_working_days": 2, "to": "root"}, {"after_working_days": 5, "to": "emails"}])
    problem_at(dump(data), "escalation[1].emails", "email")


def test_escalation_to_unknown_target():
    problem_at(dump(with_top(escalation=[{"after_working_days": 2, "to": "boss"}])), "escalation[0].to", "parent", "root")


def test_negative_escalation_and_reminder_offsets():
    data = with_top(escalation=[{"after_working_days": -1, "to": "root"}], reminders={"offsets_working_days": [3, -1]})
    problems = refused(dump(data))
    fields = {p.field for p in problems}
    assert {"escalation[0].after_working_days", "reminders.offsets_working_days[1]"} <= fields


def test_yaml_syntax_error_reports_the_row():
    text = dump(BASE)
    lines = text.splitlines()
    assert lines[2].startswith("title:")
    lines[2] = "title: Kế hoạch: thử: sai"  # "mapping values are not allowed here" on row 3
    problems = refused("\n".join(lines) + "\n")
    assert len(problems) == 1
    assert problems[0].row == 3
    assert "YAML" in problems[0].reason
    assert "dòng 3" in str(problems[0])


def test_yaml_unclosed_bracket_reports_a_row():
    problems = refused("id: x\nnumber: y\nphases: [\n  {id: a\n")
    assert problems[0].row is not None and problems[0].row >= 3
    assert "YAML" in problems[0].reason


def test_not_a_mapping():
    problems = refused("- id: x\n- id: y\n")
    assert "mapping" in problems[0].reason


def test_empty_phases_list():
    problem_at(dump(with_top(phases=[])), "phases", "ít nhất một giai đoạn")


def test_bad_timezone():
    problem_at(dump(with_top(timezone="Asia/Hanoi_City")), "timezone", "Asia/Hanoi_City")


def test_deadline_outside_the_plan_year():
    problem_at(dump(with_phase(0, deadline="05/12/2032")), "phases[0].deadline", "2023")


def test_bad_calendar_date():
    data = with_top(calendar={"swaps": [{"day_off": "30/02/2023", "work_on": "02/12/2023"}]})
    problem_at(dump(data), "calendar.swaps[0].day_off", "30/02/2023")


def test_wrong_type_for_a_field():
    problem_at(dump(with_top(year="hai nghìn")), "year")


def test_every_problem_is_reported_at_once():
    data = with_top(rule_set="76/15")
    data["phases"][0]["kind"] = "party"
    data["phases"][1]["applies_to"] = ["chi_doan"]
    problems = refused(dump(data))
    assert {"rule_set", "phases[0].kind", "phases[1].applies_to[0]"} <= {p.field for p in problems}


def test_load_plan_missing_file(tmp_path):
    with pytest.raises(InvalidInput) as info:
        load_plan(tmp_path / "khong-co.yaml")
    assert "khong-co.yaml" in str(info.value)


def test_load_plan_reports_its_path(tmp_path):
    path = tmp_path / "ke-hoach.yaml"
    path.write_text(dump(with_top(rule_set="76/15")), encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_plan(path)
    assert info.value.problems[0].source == str(path)


def test_a_documents_note_reaches_users_unless_it_only_repeats_the_name():
    plan = load_plan(PLANS / "187-KH-DU-2023.yaml")
    notes = {d.doc_type: d.note for d in plan.phase("chi_bo_kiem_diem").documents}
    assert notes["phieu_phan_tich_chat_luong"] == "Phiếu phân tích chất lượng và đánh giá xếp loại tổ chức cơ sở đảng (mẫu 3đ)"
    assert notes["tong_hop_xep_loai_dang_vien"] == "Tổng hợp kết quả đề nghị đánh giá, xếp loại chất lượng đảng viên"
    assert notes["nhan_xet_noi_cu_tru"] == ""  # the plan's note is the catalogue's name, word for word


def test_a_per_member_document_of_a_unit_kind_without_members_is_flagged(hatinh):
    """Members sit only in branches: the Hà Tĩnh leaders' personal documents required of a đảng bộ
    cơ sở are owed by no one there, and the office is told so when it checks the plan."""
    from kiemdiem.plan import plan_warnings  # noqa: PLC0415

    (warning,) = plan_warnings(hatinh)
    assert warning.startswith("giai đoạn 'ho_so_can_bo': “Bản kiểm điểm cá nhân”, “Phiếu bổ sung hồ sơ lý lịch hằng năm”")
    assert "Đảng bộ cơ sở không có đảng viên trực tiếp" in warning and "Chi bộ cơ sở" not in warning
    assert plan_warnings(load_plan(PLANS / "187-KH-DU-2023.yaml")) == []


def test_a_phase_id_that_is_a_document_type_is_refused_naming_the_field():
    """The drop folder tells <unit>/<phase>/<doc type>/ from <unit>/<doc type>/<member>/ by it."""
    problem_at(dump(with_phase(1, id="bien_ban_hoi_nghi", after=["chi_bo"])), "phases[1].id", "bien_ban_hoi_nghi", "loại văn bản")


def test_a_rule_set_outside_its_years_is_flagged():
    from kiemdiem.plan import plan_warnings  # noqa: PLC0415

    assert plan_warnings(parse_plan(dump(with_top(rule_set="124/25", year=2024)))) == []
    (warning,) = plan_warnings(parse_plan(dump(with_top(rule_set="366/43", year=2023))))
    assert warning.startswith("kế hoạch năm 2023 chọn bộ quy tắc 366/43") and "từ năm 2025" in warning
    (warning,) = plan_warnings(parse_plan(dump(with_top(rule_set="132/21", year=2023))))
    assert "các năm 2019–2022" in warning
    for path in sorted(PLANS.glob("*.yaml")):  # the seeds chose the rules of their year
        assert not [w for w in plan_warnings(load_plan(path)) if "bộ quy tắc" in w], path.name
