"""Uploads: type by content, size and name checks (pure), and the upload route (SQLite and PostgreSQL):
one submission per upload through record_submission, feedback per file, nothing stored when refused."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import select

from kiemdiem.store.models import EventLog, Submission, SubmissionFile
from kiemdiem.web.uploads import check_file, check_filename, format_size, sniff
from tests.support import ict, table_counts
from tests.web.conftest import PDF, docx_bytes, xlsx_bytes

MAX = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPG = b"\xff\xd8\xff\xe0" + b"\x00" * 40
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100
DOC = OLE2 + "WordDocument".encode("utf-16-le") + b"\x00" * 20
XLS = OLE2 + "Workbook".encode("utf-16-le") + b"\x00" * 20
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 100
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"


def zip_with(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in names:
            z.writestr(name, "x")
    return out.getvalue()


@pytest.mark.parametrize("name, data, kind", [
    ("bao_cao.pdf", PDF, "pdf"),
    ("BAO CAO.PDF", b"\xef\xbb\xbf\n" + PDF, "pdf"),
    ("anh.png", PNG, "png"),
    ("anh.jpg", JPG, "jpg"),
    ("anh.jpeg", JPG, "jpg"),
    ("bien ban (1).docx", docx_bytes(), "docx"),
    ("tong hop.xlsx", xlsx_bytes(), "xlsx"),
    ("cu.doc", DOC, "doc"),
    ("cu.xls", XLS, "xls"),
    ("Báo cáo kiểm điểm.pdf", PDF, "pdf"),
])
def test_allowed_files_pass_by_content(name, data, kind):
    check = check_file(name, data, MAX)
    assert check.ok, check.reason
    assert check.kind == kind and sniff(data) == kind
    assert check.filename == name  # kept as the user named it: no folder part to strip here


@pytest.mark.parametrize("name, data, reason", [
    ("bao_cao.pdf", EXE, "tệp chương trình"),
    ("bao_cao.pdf", HTML, "HTML"),
    ("bao_cao.pdf", b"", "tệp rỗng"),
    ("bao_cao.pdf", PDF + b"x" * MAX, "tệp quá lớn"),
    ("virus.exe", EXE, "loại tệp không được nhận ('.exe')"),
    ("ghi_chu", PDF, "không có phần mở rộng"),
    ("trang.html", HTML, "loại tệp không được nhận"),
    ("tong hop.xlsx", docx_bytes(), "nội dung là Word (DOCX) nhưng tên tệp có đuôi .xlsx"),
    ("bao_cao.docx", zip_with("a.txt"), "tệp nén ZIP"),
    ("bao_cao.docx", zip_with("[Content_Types].xml", "ppt/slide1.xml"), "không phải Word (DOCX)"),
    ("cu.doc", XLS, "nội dung là Excel 97-2003 (XLS)"),
    ("cu.doc", OLE2, "Office cũ không nhận dạng được"),
    ("../../etc/passwd", b"root:x:0:0", "đường dẫn"),
    ("..\\..\\boot.ini.pdf", PDF, "đường dẫn"),
    ("/etc/cron.d/x.pdf", PDF, "đường dẫn"),
    ("..", PDF, "đường dẫn"),
    (".htaccess.pdf", PDF, "dấu chấm"),
    ("bao\x00cao.pdf", PDF, "ký tự điều khiển"),
    ("bao\u202ecao.pdf", PDF, "ký tự điều khiển"),
    ("a" * 300 + ".pdf", PDF, "quá dài"),
])
def test_refused_files_say_why(name, data, reason):
    check = check_file(name, data, MAX)
    assert not check.ok
    assert reason in check.reason


def test_sizes_read_in_the_unit_that_fits():
    assert [format_size(n) for n in (512, 3500, 1024 * 1024 + 116, 5 * 1024 * 1024)] == ["512 B", "3,4 KB", "1,0 MB", "5,0 MB"]
    # Just over the limit both round to 1,0 MB: the refusal gives exact bytes.
    assert check_file("a.pdf", b"%PDF" + b"x" * (1024 * 1024), 1024 * 1024).reason == "tệp quá lớn (1.048.580 byte; tối đa 1.048.576 byte = 1,0 MB)"


def test_traversal_names_are_refused_before_anything_else():
    assert "đường dẫn" in check_filename("../../etc/passwd")
    assert check_filename("bien_ban.pdf") is None


# ----------------------------------------------------------------------------- the upload route


def blob_files(store) -> set[str]:
    return {p.name for p in store.blobs.root.rglob("*") if p.is_file()} if store.blobs.root.exists() else set()


def upload(client, code: str, item: str, files, member: str | None = None, json: bool = True):
    data = {"csrf_token": client.csrf, "item": item}
    if member:
        data["member"] = member
    headers = {"Accept": "application/json"} if json else {}
    return client.post(f"/c/c187/u/{code}/upload", data=data, files=[("files", f) for f in files], headers=headers)


DRAFT = "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u"


def test_two_files_make_one_web_submission_on_time(client_as, store):
    client = client_as("vp1@sct.example.vn")
    response = upload(client, "VP1", DRAFT, [("du_thao.pdf", PDF + b"1", "application/pdf"),
                                              ("phu_luc.docx", docx_bytes("phụ lục"), "application/octet-stream")])
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] and result["on_time"] and result["item_key"] == "VP1:chuan_bi_chi_bo:du_thao_bao_cao_kiem_diem:-"
    assert [f["status"] for f in result["files"]] == ["accepted", "accepted"]
    assert all("đúng hạn" in f["message"] and "30/11/2023 23:59" in f["message"] for f in result["files"])
    with store.uow() as uow:
        submission = uow.session.get(Submission, result["submission_id"])
        files = uow.session.scalars(select(SubmissionFile).where(SubmissionFile.submission_id == submission.id)).all()
        assert (submission.source, submission.submitted_by, submission.on_time) == ("web", "vp1@sct.example.vn", True)
        assert submission.received_at == ict(2023, 11, 28, 9)
        assert sorted((f.filename, f.content_type) for f in files) == [
            ("du_thao.pdf", "application/pdf"),
            ("phu_luc.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ]
        [logged] = uow.session.scalars(select(EventLog).where(EventLog.action == "web.upload")).all()
        assert logged.actor == "vp1@sct.example.vn" and logged.detail["submission_id"] == submission.id
        assert uow.session.scalar(select(EventLog).where(EventLog.action == "submission.received", EventLog.subject == result["item_key"])).detail["source"] == "web"
    page = client.get("/c/c187/u/VP1").text
    section = page[page.index('data-phase="chuan_bi_chi_bo"'):page.index('data-phase="chi_bo_kiem_diem"')]
    assert "Hoàn thành" in section and "✓ Đã nộp" in section


def test_a_vietnamese_file_name_is_kept_shown_and_downloaded_as_given(client_as, store):
    client = client_as("vp1@sct.example.vn")
    name = "Dự thảo báo cáo kiểm điểm 3đ.pdf"
    result = upload(client, "VP1", DRAFT, [(name, PDF + b"vn", "application/pdf")]).json()
    with store.uow() as uow:
        file_id, stored_name = uow.session.execute(
            select(SubmissionFile.id, SubmissionFile.filename).where(SubmissionFile.submission_id == result["submission_id"])
        ).one()
    assert stored_name == name
    assert name in client.get("/c/c187/u/VP1").text
    download = client.get(f"/c/c187/files/{file_id}")
    assert download.status_code == 200 and download.content == PDF + b"vn"
    assert "filename*=utf-8''D%E1%BB%B1%20th%E1%BA%A3o%20b%C3%A1o" in download.headers["content-disposition"]


def test_late_upload_says_late(client_as, clock):
    clock.now = ict(2023, 12, 1, 8)
    result = upload(client_as("vp1@sct.example.vn"), "VP1", DRAFT, [("du_thao.pdf", PDF + b"late", "application/pdf")]).json()
    assert result["ok"] and result["on_time"] is False
    assert "trễ hạn" in result["files"][0]["message"]


def test_identical_upload_changes_nothing(client_as, store):
    client = client_as("vp1@sct.example.vn")
    files = [("du_thao.pdf", PDF + b"same", "application/pdf")]
    assert upload(client, "VP1", DRAFT, files).json()["ok"]
    before = table_counts(store)
    again = upload(client, "VP1", DRAFT, files).json()
    assert again["ok"] and again["files"][0]["status"] == "unchanged"
    assert table_counts(store) == before


def test_per_member_document_needs_a_member_of_the_unit(client_as, store):
    client = client_as("vp1@sct.example.vn")
    item = "chi_bo_kiem_diem|ban_kiem_diem_ca_nhan|m"
    before, blobs = table_counts(store), blob_files(store)
    missing = upload(client, "VP1", item, [("tu_kiem_diem.pdf", PDF + b"m", "application/pdf")])
    assert missing.status_code == 422 and "chọn đảng viên" in missing.json()["message"]
    foreign = upload(client, "VP1", item, [("tu_kiem_diem.pdf", PDF + b"m", "application/pdf")], member="DV004")
    assert foreign.status_code == 422 and "không sinh hoạt" in foreign.json()["message"]
    assert table_counts(store) == before and blob_files(store) == blobs
    ok = upload(client, "VP1", item, [("tu_kiem_diem.pdf", PDF + b"m", "application/pdf")], member="DV002").json()
    assert ok["ok"] and ok["item_key"] == "VP1:chi_bo_kiem_diem:ban_kiem_diem_ca_nhan:DV002"


REFUSED_UPLOADS = [
    ("oversized", [("du_thao.pdf", PDF + b"x" * (1024 * 1024), "application/pdf")], "tối đa 1.048.576 byte = 1,0 MB)"),
    ("exe named pdf", [("du_thao.pdf", EXE, "application/pdf")], "Nội dung tệp không phải PDF như phần mở rộng .pdf cho biết (nội dung: tệp chương trình"),
    ("html named pdf", [("du_thao.pdf", HTML, "application/pdf")], "HTML"),
    ("traversal name", [("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "text/plain")], "Tên tệp không hợp lệ: không được chứa đường dẫn"),
    ("traversal pdf", [("../../../tmp/x.pdf", PDF, "application/pdf")], "đường dẫn"),
    ("one bad of two", [("du_thao.pdf", PDF + b"good", "application/pdf"), ("script.pdf", HTML, "application/pdf")], "HTML"),
    ("no type chosen", [("du_thao.pdf", PDF, "application/pdf")], "Hãy chọn loại văn bản"),
    ("document not owed", [("du_thao.pdf", PDF, "application/pdf")], "không phải nộp loại văn bản"),
]


@pytest.mark.parametrize("label, files, reason", REFUSED_UPLOADS, ids=[r[0] for r in REFUSED_UPLOADS])
def test_refused_upload_stores_nothing(client_as, store, label, files, reason):
    client = client_as("vp1@sct.example.vn")
    item = {"no type chosen": "", "document not owed": "dang_uy_bao_cao_khoi|quyet_dinh_xep_loai|u"}.get(label, DRAFT)
    before, blobs = table_counts(store), blob_files(store)
    response = upload(client, "VP1", item, files)
    assert response.status_code == 422
    result = response.json()
    assert not result["ok"]
    text = result["message"] + " ".join(f["message"] for f in result["files"])
    assert reason in text
    assert len(result["files"]) == len(files) and all(f["status"] in ("refused", "not_stored") for f in result["files"])
    assert table_counts(store) == before
    assert blob_files(store) == blobs


MEMBER_LIST_ITEM = "chi_bo_kiem_diem|tong_hop_xep_loai_dang_vien|u"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_a_classification_list_that_does_not_read_is_refused_with_its_rows(client_as, store):
    client = client_as("vp1@sct.example.vn")
    before, blobs = table_counts(store), blob_files(store)
    bad = "Mã đảng viên,Chi bộ đề xuất\nDV001,Giỏi\nDV004,HTTNV\n".encode()
    response = upload(client, "VP1", MEMBER_LIST_ITEM, [("tong_hop.csv", bad, "text/csv"), ("bien_ban.pdf", PDF + b"scan", "application/pdf")])
    assert response.status_code == 422
    result = response.json()
    assert not result["ok"] and "Danh sách có 2 lỗi cần sửa, chưa được nhận:" in result["message"]
    listed, scan = result["files"]
    assert listed["status"] == "refused" and scan["status"] == "not_stored"
    assert "dòng 2, cột 'Chi bộ đề xuất': mức xếp loại không hợp lệ 'Giỏi'" in listed["message"]
    assert "dòng 3, cột 'Mã đảng viên'" in listed["message"] and "DV004" in listed["message"]
    # Nothing stored: the unit's current list (none here) stays what it was.
    assert table_counts(store) == before and blob_files(store) == blobs


def test_a_classification_list_is_received_as_csv_and_refused_as_old_excel(client_as, store):
    client = client_as("vp1@sct.example.vn")
    old_excel = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "Workbook".encode("utf-16-le") + b"\x00" * 64
    before, blobs = table_counts(store), blob_files(store)
    refused = upload(client, "VP1", MEMBER_LIST_ITEM, [("tong_hop.xls", old_excel, "application/vnd.ms-excel")])
    assert refused.status_code == 422 and "lưu lại dạng .xlsx" in refused.json()["files"][0]["message"]
    assert table_counts(store) == before and blob_files(store) == blobs
    good = "Mã đảng viên,Tự xếp loại,Chi bộ đề xuất\nDV001,HTTNV,HTTNV\n".encode()
    received = upload(client, "VP1", MEMBER_LIST_ITEM, [("tong_hop.csv", good, "text/csv")]).json()
    assert received["ok"] and received["item_key"] == "VP1:chi_bo_kiem_diem:tong_hop_xep_loai_dang_vien:-"
    not_text = upload(client, "VP1", MEMBER_LIST_ITEM, [("tong_hop.csv", PDF, "text/csv")])
    assert not_text.status_code == 422 and "không phải CSV" in not_text.json()["files"][0]["message"]


def test_refusal_is_shown_per_file_without_javascript(client_as, store):
    client = client_as("vp1@sct.example.vn")
    response = upload(client, "VP1", DRAFT, [("du_thao.pdf", PDF + b"ok", "application/pdf"), ("x.pdf", EXE, "application/pdf")], json=False)
    assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
    assert '<li class="refused"><strong>x.pdf</strong>' in response.text
    assert '<li class="not_stored"><strong>du_thao.pdf</strong>' in response.text


def test_request_larger_than_the_limit_is_refused_before_reading(client_as, store):
    client = client_as("vp1@sct.example.vn")
    before, blobs = table_counts(store), blob_files(store)
    big = PDF + b"x" * (5 * 1024 * 1024 + 10)
    response = upload(client, "VP1", DRAFT, [("a.pdf", big, "application/pdf"), ("b.pdf", big, "application/pdf")])
    assert response.status_code == 413 and "quá lớn" in response.json()["message"]
    assert table_counts(store) == before and blob_files(store) == blobs


def test_office_uploads_for_a_unit_below_it(client_as, store):
    result = upload(client_as("office@sct.example.vn"), "KC", DRAFT, [("du_thao.pdf", PDF + b"kc", "application/pdf")]).json()
    assert result["ok"]
    with store.uow() as uow:
        assert uow.session.get(Submission, result["submission_id"]).submitted_by == "office@sct.example.vn"


def test_the_upload_form_lists_phases_by_deadline(client_as):
    """As the unit meets them: the drafts (25/11) first, the remediation plans (28/12, 31/12) last;
    grouping by phase id put 'chi_bo_khac_phuc' first."""
    import re  # noqa: PLC0415

    page = client_as("vp1@sct.example.vn").get("/c/c187/u/VP1/upload").text
    labels = re.findall(r'<optgroup label="[^"]*\(hạn (\d\d/\d\d/\d{4})', page)
    assert len(labels) == 4 and page.count("<optgroup") == page.count("</optgroup>") == 4
    days = [tuple(reversed(d.split("/"))) for d in labels]
    assert days == sorted(days)


def test_the_same_file_for_a_second_member_is_kept_with_a_warning(client_as):
    client = client_as("vp1@sct.example.vn")
    item = "chi_bo_kiem_diem|ban_kiem_diem_ca_nhan|m"
    first = upload(client, "VP1", item, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV001").json()
    assert first["ok"] and not first["warnings"]
    second = upload(client, "VP1", item, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV002").json()
    assert second["ok"] and "tệp này giống hệt tệp đã nộp cho Bản kiểm điểm cá nhân của đảng viên Nguyễn Sỹ Chín (DV001)" in second["warnings"][0]
