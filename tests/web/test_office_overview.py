"""What the office of a đảng bộ reads on the overview: the overdue list titled for what it is (one
row per unit and phase), whether each overdue phase was chased (sent, made but failed, waiting),
mail failures in Vietnamese with the server's words tucked away, and the plan (not the campaign's
code) in the breadcrumb."""

from __future__ import annotations

import re

from sqlalchemy import select

from kiemdiem.store.models import Notice, Outbox, Unit
from tests.support import ict
from tests.web.conftest import CAMPAIGN

SMTP_DOWN = {
    "status": "temporary", "code": None, "error_type": "SMTPConnectError", "refused": [],
    "message": "Error connecting to 127.0.0.1 on port 1025: [Errno 111] Connect call failed ('127.0.0.1', 1025)",
}


def add_escalation(store, unit: str, phase: str, status: str, n: int, step: int = 1, error=None, at=None) -> None:
    """One escalation email about ``unit``'s phase, with its notice, in the state ``status``."""
    at = at or ict(2023, 12, 1, 8)
    with store.uow() as uow:
        unit_id = uow.session.scalar(select(Unit.id).where(Unit.campaign_id == CAMPAIGN, Unit.code == unit))
        row = Outbox(
            campaign_id=CAMPAIGN, idempotency_key=f"esc{n}", key_material=f"esc{n}", kind="escalation", recipient="vanphong@sct.example.vn",
            recipient_name="Văn phòng", subject=f"Đôn đốc: {unit}", body_text="-", body_html="-", attachments=[], message_id=f"<esc{n}@x>",
            reason="", status=status, attempts=1 if status != "queued" else 0, not_before=at, next_attempt_at=at,
            sent_at=at if status == "sent" else None, created_at=at, last_error=error, claimed_at=at if status == "failed" else None,
        )
        uow.session.add(row)
        uow.session.flush()
        uow.session.add(Notice(campaign_id=CAMPAIGN, recipient=row.recipient, recipient_name="Văn phòng", kind="escalation", step=step,
                               item_key=f"{unit}:{phase}:du_thao_bao_cao_kiem_diem:-:{n}", unit_id=unit_id, phase_id=phase,
                               doc_type="du_thao_bao_cao_kiem_diem", planned_at=at, outbox_id=row.id))
        uow.commit()


def overdue_rows(page: str) -> dict[tuple[str, str], str]:
    table = page[page.index('id="overdue"'):].split("</table>")[0]
    rows = {}
    for row in table.split("<tr>")[2:]:
        code = re.search(r"<small>([^<]+)</small>", row).group(1)
        phase = re.search(r"</td>\s*<td>([^<]+)</td>", row).group(1)
        rows[(code, phase)] = row
    return rows


def test_the_overdue_list_is_titled_as_rows_of_unit_and_phase(client_as, clock):
    """08/12: every branch missed 05/12, SCT 06/12; VP2, KC, QL2 missed 30/11 as well. The card counts
    units (6), the list has a row per unit and phase (9): its title says both, not "Đơn vị quá hạn (9)"."""
    clock.now = ict(2023, 12, 8, 10)
    page = client_as("office@sct.example.vn").get("/c/c187").text
    card = re.search(r'id="overdue-count">.*?class="big[^"]*">(\d+)<', page, re.S).group(1)
    rows = overdue_rows(page)
    assert card == str(len({code for code, _ in rows}))
    assert len(rows) > int(card)
    title = re.search(r'<h2 id="overdue-title">([^<]+)</h2>', page).group(1)
    assert title == f"Hồ sơ quá hạn theo đơn vị và giai đoạn ({len(rows)} dòng, {card} đơn vị)"
    assert "Đơn vị quá hạn (" not in page
    assert "đơn vị quá hạn ở nhiều giai đoạn có nhiều dòng" in page


def test_chased_says_sent_failed_or_waiting(client_as, store, clock):
    """Escalations made while the mail server was down are not "chưa": the office would chase again by hand."""
    clock.now = ict(2023, 12, 1, 12)
    phase = "chuan_bi_chi_bo"
    add_escalation(store, "VP2", phase, "sent", 1, at=ict(2023, 12, 1, 7, 30))
    add_escalation(store, "KC", phase, "failed", 2, error=SMTP_DOWN)
    add_escalation(store, "KC", phase, "failed", 3, step=2, error=SMTP_DOWN)
    add_escalation(store, "QL2", phase, "queued", 4)
    page = client_as("office@sct.example.vn").get("/c/c187").text
    rows = overdue_rows(page)
    [vp2] = [v for k, v in rows.items() if k[0] == "VP2"]
    assert "đã gửi lần 1, 01/12/2023 07:30" in vp2 and "gửi lỗi" not in vp2
    kc = next(v for k, v in rows.items() if k[0] == "KC")
    assert "đã tạo 2 thư, gửi lỗi" in kc and ">chưa<" not in kc
    assert 'title="Không kết nối được máy chủ thư (SMTP)' in kc  # why, on hovering
    ql2 = next(v for k, v in rows.items() if k[0] == "QL2")
    assert "đã tạo 1 thư, đang chờ gửi" in ql2 and ">chưa<" not in ql2


def test_a_failed_escalation_shows_on_an_overview_rendered_before_it_failed(client_as, store, clock):
    """The overdue list is cached per status view and counts sent: an escalation made (and then failed)
    after a render must still show on the next one."""
    clock.now = ict(2023, 12, 1, 12)
    client = client_as("office@sct.example.vn")
    kc = next(v for k, v in overdue_rows(client.get("/c/c187").text).items() if k[0] == "KC")
    assert ">chưa<" in kc
    add_escalation(store, "KC", "chuan_bi_chi_bo", "queued", 5)
    kc = next(v for k, v in overdue_rows(client.get("/c/c187").text).items() if k[0] == "KC")
    assert "đã tạo 1 thư, đang chờ gửi" in kc


def test_mail_failures_are_said_in_vietnamese_with_the_technical_words_apart(client_as, store, clock):
    clock.now = ict(2023, 12, 1, 12)
    add_escalation(store, "KC", "chuan_bi_chi_bo", "failed", 6, error=SMTP_DOWN)
    page = client_as("office@sct.example.vn").get("/c/c187").text
    notice = page[page.index('id="mail-failures"'):]
    notice = notice[:notice.index("</div>")]
    shown, technical = notice.split("<details", 1)
    assert "1 thư chưa gửi được" in shown
    assert "Không kết nối được máy chủ thư (SMTP)" in shown and "báo bộ phận CNTT kiểm tra cấu hình gửi thư" in shown
    assert "Error connecting" not in shown and "Errno" not in shown
    assert "Chi tiết kỹ thuật" in technical and "Error connecting to 127.0.0.1 on port 1025" in technical


def test_mail_error_text_reads_outcomes_and_plain_text():
    from kiemdiem.web.context import mail_error_detail, mail_error_text  # the helper the people page uses as well

    assert mail_error_text(None) == "" and mail_error_text({}) == "" and mail_error_detail(None) == ""
    assert mail_error_text(SMTP_DOWN).startswith("Không kết nối được máy chủ thư (SMTP)")
    assert mail_error_text(SMTP_DOWN["message"]).startswith("Không kết nối được máy chủ thư (SMTP)")  # older rows: text only
    assert "SMTPConnectError" in mail_error_detail(SMTP_DOWN) and "Errno 111" in mail_error_detail(SMTP_DOWN)
    login = {"status": "temporary", "code": 535, "message": "5.7.8 Authentication credentials invalid", "error_type": "SMTPAuthenticationError"}
    assert "đăng nhập" in mail_error_text(login) and "CNTT" in mail_error_text(login)
    refused = {"status": "permanent", "code": 550, "message": "5.1.1 mailbox unavailable", "error_type": "SMTPRecipientsRefused",
               "refused": [{"recipient": "x@y.vn", "code": 550, "message": "5.1.1 mailbox unavailable"}]}
    assert "địa chỉ" in mail_error_text(refused) and "kiểm tra lại địa chỉ email" in mail_error_text(refused)
    assert "địa chỉ" in mail_error_text("550 5.1.1 mailbox unavailable")
    assert mail_error_text({"status": "temporary", "code": 451, "message": "4.3.0 try later"}).startswith("Máy chủ thư tạm thời chưa nhận thư")
    assert mail_error_text({"status": "temporary", "error_type": "SMTPConnectTimeoutError", "message": "Timed out connecting"}).startswith(
        "Máy chủ thư (SMTP) không trả lời kịp")
    for error in (SMTP_DOWN, login, refused, "anything at all"):
        text = mail_error_text(error)
        assert text and not re.search(r"[A-Za-z]{4,} [a-z]{3,} [a-z]{3,}", text.replace("SMTP", "")), text  # no English sentence


def test_the_breadcrumb_names_the_plan_not_the_campaign_code(client_as, campaign):
    page = client_as("office@sct.example.vn").get("/c/c187").text
    crumbs = re.search(r'<p class="crumbs">(.*?)</p>', page).group(1)
    assert campaign.plan.number in crumbs and campaign.plan.title in crumbs
    assert "c187" not in re.sub(r'href="[^"]*"', "", crumbs)
    listing = client_as("office@sct.example.vn").get("/campaigns").text
    assert campaign.plan.title in listing


def test_the_progress_csv_stays_machine_readable_and_names_each_phase(client_as):
    """CSV is for programs (ids, "." decimals), with the names beside the ids; XLSX is the one for Excel."""
    import csv
    import io

    text = client_as("office@sct.example.vn").get("/c/c187/u/SCT/export/progress.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert "Mã giai đoạn" in header and "Tên giai đoạn" in header
    row = next(r for r in body if r[header.index("Mã giai đoạn")] == "chuan_bi_dang_uy")
    assert row[header.index("Tên giai đoạn")].startswith("Đảng ủy Sở gửi dự thảo báo cáo kiểm điểm")
    assert re.fullmatch(r"\d+(\.\d+)?", row[header.index("% hoàn thành")])
