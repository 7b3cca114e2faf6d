"""The outbox's MIME bytes, written directly (``render_mime``), against the email package.

Two kinds of proof, for a variety of messages (Vietnamese names, long lines, many items, HTML
special characters, every purpose, odd senders and recipients):

- the bytes equal, byte for byte, those of ``build_mime`` serialised by the email package with
  the same boundaries (``legacy_mime_bytes``);
- read back by ``email.message_from_bytes(policy=default)``, the new bytes and the old ones
  (``build_mime(...).as_bytes``, random boundaries, as the outbox stored them before) give the
  same headers, text, HTML and attachments; and so do the bytes aiosmtpd receives.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kiemdiem.notify import messages
from kiemdiem.notify.messages import (
    Attachment,
    ComposedMessage,
    OutstandingItem,
    PhaseDue,
    build_mime,
    compose_consolidation_diff,
    compose_escalation,
    compose_invite,
    compose_reminder,
    legacy_mime_bytes,
    make_message_id,
    mime_boundaries,
    render_mime,
)
from kiemdiem.notify.sink import MailSink
from kiemdiem.notify.transport import SendStatus, SmtpTransport
from kiemdiem.settings import SmtpSettings

from tests.core.test_email_templates import HCM, NOW, SENDER, SUBMIT_URL  # the messages those tests compose

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng", "Bùi", "Đỗ", "Lò", "Quách")
MIDDLE = ("Văn", "Thị", "Đức", "Ngọc", "Hữu", "Thùy", "Quỳnh", "Xuân")
GIVEN = ("Hạnh", "Đức", "Hùng", "Thủy", "Nguyệt", "Khoa", "Ánh", "Ðạt", "Yến", "Lực")


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"


def _dues(rng: random.Random, units: int, members: int, special: bool = False) -> list[PhaseDue]:
    review, remediation = [], []
    member = 0
    for u in range(units):
        code = f"TINH-CS{u:03d}-CB{u % 7:02d}"
        name = f"Chi bộ {rng.choice(FAMILY)} {rng.choice(GIVEN)} số {u}"
        if special:
            name += ' & "Tổ <Kỹ thuật>" \'x\' ; , \\ '
        review.append(OutstandingItem(code, name, "bao_cao_kiem_diem_tap_the", "Báo cáo kiểm điểm tập thể"))
        review.append(OutstandingItem(code, name, "bien_ban_hoi_nghi",
                                      "Biên bản hội nghị kiểm điểm, đánh giá, xếp loại"))
        for _ in range(members):
            member += 1
            review.append(OutstandingItem(code, name, "ban_kiem_diem_ca_nhan", "Bản kiểm điểm cá nhân",
                                          f"DV{member:07d}", _person(rng)))
        remediation.append(OutstandingItem(code, name, "ke_hoach_khac_phuc",
                                           "Kế hoạch khắc phục hạn chế, khuyết điểm"))
    phase_name = "Chi bộ cơ sở, chi bộ trực thuộc đảng ủy cơ sở kiểm điểm, đánh giá, xếp loại chất lượng"
    if special:
        phase_name += " <b>&amp;</b> \"đợt 2\"; giai đoạn, bổ sung \\ cuối"
    return [
        PhaseDue("KH/ĐUK (Hà Tĩnh, 2022)", "Ban Thường vụ Đảng ủy Khối các cơ quan và doanh nghiệp tỉnh",
                 "chi_bo_kiem_diem", phase_name, datetime(2022, 12, 1, 23, 59, tzinfo=HCM),
                 "“hoàn thành trước ngày 01/12/2022” được hiểu là: hạn cuối 23:59:59 thứ Năm, ngày "
                 "01/12/2022 (giờ Việt Nam, UTC+07:00)", tuple(review)),
        PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "khac_phuc_chi_bo",
                 "Chi bộ gửi kế hoạch khắc phục hạn chế, khuyết điểm",
                 datetime(2022, 12, 28, 17, 0, tzinfo=HCM), "trước 17:00 ngày 28/12/2022", tuple(remediation)),
    ]


def _variety() -> list[tuple[str, ComposedMessage]]:
    rng = random.Random(187)
    out = []
    for units, members, special in ((1, 0, False), (1, 3, True), (2, 21, False), (4, 60, True), (12, 45, False)):
        dues = _dues(rng, units, members, special)
        name = f"Đồng chí {_person(rng)}" + (" <&>" if special else "")
        out.append((f"reminder-{units}-{members}",
                    compose_reminder(name, dues, submit_url=SUBMIT_URL, now=NOW)))
        out.append((f"escalation-{units}-{members}",
                    compose_escalation(name, [replace(d, step=2, overdue_working_days=3) for d in dues], submit_url=SUBMIT_URL, now=NOW)))
    out.append(("invite", compose_invite("Đồng chí Nguyễn Thị Hạnh", "Chi bộ Văn phòng Sở & <Kho>",
                                         "http://127.0.0.1:8080/dang-nhap?token=abc&unit=CB01", NOW)))
    out.append(("diff", compose_consolidation_diff(
        "Văn phòng Đảng ủy", "187-KH/ĐU", "Đảng bộ Sở Công Thương", 3,
        "Đảng viên Trần Văn Đức: HTNV → HTTNV\n" + "x" * 500 + "\nHTTNV: 41 → 42",
        {"members": [{"id": "DV0012", "from": "HTNV", "to": "HTTNV"}], "findings_appeared": ["cap_20"]}, NOW)))
    out.append(("diff-empty", compose_consolidation_diff("VP", "187", "Đảng bộ", 2, "", {}, NOW)))
    long_line = "Dòng rất dài không xuống dòng " * 40
    out.append(("raw-text", ComposedMessage(
        "ệ" * 90, "a\r\nb\rc\n\nd" + long_line, "<p>" + long_line + "</p>",
        (Attachment("han.ics", "text/calendar; method=PUBLISH", "BEGIN:VCALENDAR\r\nÁ\r\n".encode()),
         Attachment("bin.dat", "application/octet-stream", bytes(range(256)) * 3),
         Attachment("bao-cao.pdf", "application/pdf", b"%PDF-1.4\n" + b"\x00\xff" * 100)))))
    out.append(("empty", ComposedMessage("s", "", "")))
    out.append(("no-newline", ComposedMessage("Kết quả", "một dòng", "<p>một</p>")))
    return out


VARIETY = _variety()
RECIPIENTS = [
    "hanh@example.vn",
    "bi.thu+cb01@chi-bo.tinh.example.vn",
    "Nguyễn Thị Hạnh <hanh@example.vn>",
    "Nguyễn Thị Hạnh Một Cái Tên Rất Dài Để Xem Gập Dòng Thế Nào <hanh@example.vn>",
    "Van phong <vp@example.vn>",
    '"Office, Inc." <office@example.vn>',
    "UPPER.Case_01@Example.VN",
    "a" * 70 + "@example.vn",
    "hạnh@ví-dụ.vn",
]
SENDERS = [SENDER, "vp@kiemdiem.local", "Kiemdiem <vp@kiemdiem.local>",
           "Văn phòng Đảng ủy Khối các cơ quan và doanh nghiệp tỉnh Hà Tĩnh <vp@kiemdiem.local>"]


def _old(msg, sender, recipient, message_id, date) -> bytes:
    """What enqueue stored before: the email package's bytes, random boundaries."""
    return build_mime(msg, sender=sender, recipient=recipient, message_id=message_id,
                      date=date).as_bytes(policy=email.policy.SMTP)


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _view(raw: bytes) -> dict:
    """Everything a reader sees: decoded headers, structure, bodies, attachments."""
    parsed = _parse(raw)
    assert not parsed.defects
    parts = []
    for part in parsed.walk():
        assert not part.defects, part.defects
        entry = {"type": part.get_content_type(), "params": dict(part.get_params() or [])}
        entry["params"].pop("boundary", None)
        if not part.is_multipart():
            entry["disposition"] = part.get_content_disposition()
            entry["filename"] = part.get_filename()
            entry["cte"] = part["Content-Transfer-Encoding"]
            entry["data"] = part.get_payload(decode=True)
            if part.get_content_maintype() == "text":
                entry["content"] = part.get_content()
        parts.append(entry)
    return {
        "headers": [(k, str(v)) for k, v in parsed.items() if k != "Content-Type"],
        "from": parsed["From"].addresses,
        "to": parsed["To"].addresses,
        "date": parsed["Date"].datetime,
        "text": parsed.get_body(("plain",)).get_content(),
        "html": parsed.get_body(("html",)).get_content(),
        "parts": parts,
    }


# ------------------------------------------------------------------------------ same bytes


@pytest.mark.parametrize("label,msg", VARIETY, ids=[label for label, _ in VARIETY])
def test_bytes_equal_the_email_packages_for_every_kind_of_message(label, msg):
    for recipient in RECIPIENTS[:4]:
        mid = make_message_id(f"{label}|{recipient}")
        new = render_mime(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW)
        assert new == legacy_mime_bytes(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW)
        assert new.isascii() and b"\r\n" in new and b"\n" not in new.replace(b"\r\n", b"")


@pytest.mark.parametrize("recipient", RECIPIENTS)
@pytest.mark.parametrize("sender", SENDERS)
def test_bytes_equal_for_senders_and_recipients(sender, recipient):
    msg = VARIETY[2][1]
    mid = make_message_id(sender + recipient)
    try:
        old = _old(msg, sender, recipient, mid, NOW)
    except ValueError as error:  # e.g. a non-ASCII address: refused alike
        with pytest.raises(type(error)):
            render_mime(msg, sender=sender, recipient=recipient, message_id=mid, date=NOW)
        return
    new = render_mime(msg, sender=sender, recipient=recipient, message_id=mid, date=NOW)
    assert new == legacy_mime_bytes(msg, sender=sender, recipient=recipient, message_id=mid, date=NOW)
    assert _view(new) == _view(old)


@pytest.mark.parametrize(
    "subject",
    [
        "Đường dẫn đăng nhập cổng nộp hồ sơ – Chi bộ Văn phòng Sở",
        "[187-KH/ĐU] Quá hạn 3 ngày làm việc: 14 mục còn thiếu tại 6 đơn vị (đôn đốc bước 2)",
        "Kết quả tổng hợp của Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh thay đổi  (phiên bản 12) ",
        "ASCII only subject, long enough to be folded by the generator at least once or twice ok",
        "ASCII =?utf-8?q?not_a_word?= (comment) <x@y> \"quoted\"",
        "short",
        "ệ" * 90,
        "a" * 200,
        "Đ",
        "🙂 emoji và chữ Việt 🙂" * 5,
    ],
)
def test_subjects(subject):
    msg = ComposedMessage(subject, "t", "<p>h</p>")
    new = render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    assert new == legacy_mime_bytes(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    if " " in subject or not subject.isascii():  # one 200-letter word cannot be folded
        head = new.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert _parse(new)["Subject"] == _parse(_old(msg, SENDER, "a@example.vn", "<x@y>", NOW))["Subject"]


@pytest.mark.parametrize(
    "date",
    [NOW, NOW.astimezone(UTC), datetime(2023, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))],
)
@pytest.mark.parametrize("message_id", ["<x@y>", make_message_id("k", "example.vn"), "<a.b+c@d-e.f>",
                                        "<weird id@host>", "<" + "a" * 80 + "@example.vn>"])
def test_dates_and_message_ids(date, message_id):
    msg = VARIETY[0][1]
    new = render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id=message_id, date=date)
    assert new == legacy_mime_bytes(msg, sender=SENDER, recipient="a@example.vn", message_id=message_id, date=date)
    assert _parse(new)["Date"].datetime == date.replace(microsecond=0)


@pytest.mark.parametrize("length", [1, 20, 33, 34, 35, 36, 50, 60, 62, 63, 64, 65, 66, 70, 100])
@pytest.mark.parametrize("content_type", ["text/calendar; method=PUBLISH", "application/json",
                                          "text/plain", "application/pdf; name=x.pdf",
                                          "text/calendar; method=PUBLISH; component=VEVENT"])
def test_attachment_names_and_types(length, content_type):
    name = ("han-" + "kh-duk-ha-tinh-2022-" * 6)[: max(1, length - 4)] + ".ics"
    msg = ComposedMessage("s", "t", "h", (Attachment(name, content_type, b"BEGIN:VCALENDAR\r\n" * 9),))
    new = render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    assert new == legacy_mime_bytes(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    assert _view(new) == _view(_old(msg, SENDER, "a@example.vn", "<x@y>", NOW))


def test_odd_attachments_take_the_email_package_path_with_the_same_result():
    msg = ComposedMessage("s", "t", "h", (
        Attachment("hạn nộp.ics", "text/calendar; method=PUBLISH", b"x"),
        Attachment("a b.txt", "text/plain; charset=utf-8", "Chữ".encode()),
        Attachment("x.bin", 'application/octet-stream; name="quoted name"', b"\x00"),
    ))
    with pytest.raises(messages._NeedsEmailPackage):
        messages._write_mime(msg, SENDER, "a@example.vn", "<x@y>", NOW)
    new = render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    assert new == legacy_mime_bytes(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW)
    assert _view(new) == _view(_old(msg, SENDER, "a@example.vn", "<x@y>", NOW))
    assert _parse(new).get_payload()[1].get_filename() == "hạn nộp.ics"


def test_every_message_of_the_variety_takes_the_fast_path():
    for label, msg in VARIETY:  # _write_mime raises _NeedsEmailPackage where it would fall back
        assert messages._write_mime(msg, SENDER, "hanh@example.vn", make_message_id(label), NOW)


# ---------------------------------------------------------------------- read back the same


@pytest.mark.parametrize("label,msg", VARIETY, ids=[label for label, _ in VARIETY])
def test_parsed_headers_bodies_and_attachments_match_the_old_bytes(label, msg):
    recipient = "Nguyễn Thị Hạnh <hanh@example.vn>"
    mid = make_message_id(label)
    new, old = (f(msg, SENDER, recipient, mid, NOW) for f in (
        lambda *a: render_mime(a[0], sender=a[1], recipient=a[2], message_id=a[3], date=a[4]), _old))
    assert new != old  # the old boundaries were random; everything a reader sees is the same:
    new_view, old_view = _view(new), _view(old)
    assert new_view == old_view
    parsed = _parse(new)
    assert parsed["Subject"] == msg.subject
    assert parsed["Message-ID"] == mid
    assert parsed["Date"].datetime == NOW
    assert parsed["Auto-Submitted"] == "auto-generated"
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == [a.filename for a in msg.attachments]
    assert [a.get_payload(decode=True) for a in attachments] == [a.data for a in msg.attachments]


def test_reminder_bodies_and_calendar_read_back_exactly():
    label, msg = VARIETY[6]  # 4 branches, 60 members each, HTML special characters
    assert label == "reminder-4-60" and len(msg.attachments) == 2
    parsed = _parse(render_mime(msg, sender=SENDER, recipient="hanh@example.vn", message_id="<r@k>", date=NOW))
    assert parsed.get_body(("plain",)).get_content() == msg.text
    assert parsed.get_body(("html",)).get_content() == msg.html
    assert "&lt;Kỹ thuật&gt;" in msg.html and "<Kỹ thuật>" in msg.text
    calendars = [p for p in parsed.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert [c.get_param("method") for c in calendars] == ["PUBLISH", "PUBLISH"]
    assert [c.get_content_charset() for c in calendars] == ["utf-8", "utf-8"]
    assert [c.get_payload(decode=True) for c in calendars] == [a.data for a in msg.attachments]
    assert calendars[0].get_payload(decode=True).startswith(b"BEGIN:VCALENDAR\r\n")


def test_rendering_is_deterministic_and_boundaries_follow_the_message_id():
    msg = VARIETY[2][1]
    a = render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<1@k>", date=NOW)
    assert a == render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<1@k>", date=NOW)
    outer, inner = mime_boundaries("<1@k>")
    assert outer != inner and len(outer) == len(inner) == 36
    assert f'boundary="{outer}"'.encode() in a and f'boundary="{inner}"'.encode() in a
    assert set(mime_boundaries("<2@k>")).isdisjoint({outer, inner})


def test_headers_refuse_line_breaks_and_bad_addresses():
    msg = ComposedMessage("s", "t", "h")
    for bad in (dict(sender="a@b.c\r\nBcc: x@y"), dict(recipient="not an address"),
                dict(recipient="a@b.c\nBcc: x@y")):
        kwargs = dict(sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=NOW) | bad
        with pytest.raises(ValueError):
            render_mime(msg, **kwargs)
    with pytest.raises(ValueError):
        render_mime(ComposedMessage("a\r\nBcc: x@y", "t", "h"), sender=SENDER, recipient="a@example.vn",
                    message_id="<x@y>", date=NOW)
    with pytest.raises(ValueError):
        render_mime(msg, sender=SENDER, recipient="a@example.vn", message_id="<x@y>", date=datetime(2023, 1, 1))


# ------------------------------------------------------------------------ through aiosmtpd


def test_aiosmtpd_receives_what_the_old_bytes_gave(tmp_path):
    cases = [(label, msg) for label, msg in VARIETY if not label.startswith("raw")]
    with MailSink(tmp_path / "mail") as sink:
        settings = SmtpSettings(host="127.0.0.1", port=sink.port, user=None, password=None,
                                password_block=None, starttls=False, timeout=5.0)

        async def run():
            outcomes = []
            async with SmtpTransport(settings) as transport:
                for label, msg in cases:
                    for render in (render_mime, None):
                        mid = make_message_id(f"{label}|{render is None}")
                        data = (render(msg, sender=SENDER, recipient="hanh@example.vn", message_id=mid, date=NOW)
                                if render else _old(msg, SENDER, "hanh@example.vn", mid, NOW))
                        outcomes.append(await transport.send_bytes(data, sender="vanphong@kiemdiem.local",
                                                                   recipients=["hanh@example.vn"]))
            return outcomes

        outcomes = asyncio.run(run())
        assert all(o.status is SendStatus.ACCEPTED for o in outcomes), outcomes
        received = sink.wait_for(2 * len(cases))
    assert len(received) == 2 * len(cases)
    for i, (label, msg) in enumerate(cases):
        new, old = received[2 * i], received[2 * i + 1]
        new_view, old_view = _view(new.raw), _view(old.raw)
        new_view["headers"] = [h for h in new_view["headers"] if h[0] != "Message-ID"]
        old_view["headers"] = [h for h in old_view["headers"] if h[0] != "Message-ID"]
        assert new_view == old_view, label
        assert new.message["Subject"] == msg.subject
        # the email package ends a body with a newline, both then and now
        assert new.message.get_body(("html",)).get_content() == "\n".join(msg.html.splitlines()) + "\n"


# ------------------------------------------------------------------------------ any message

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(st.sampled_from("aZ09 .,;:-–()[]<>&\"'/\\\n\r\tăâđêôơưĐÁÀẢÃẠỆộ€🙂"), max_size=300)
_LINE = st.text(st.sampled_from("aZ09 .,;:-–()[]<>&\"'/ăâđêôơưĐÁÀẢÃẠỆộ€🙂=?_"), min_size=1, max_size=160)
_NAME = st.text(st.sampled_from("aZ09 .-ăâđêôĐÁẠỆộ"), max_size=80)
_FILE = st.text(st.sampled_from("az09.-_+"), min_size=1, max_size=80)
_TYPE = st.sampled_from(["text/calendar; method=PUBLISH", "application/json", "application/pdf",
                         "text/plain", "text/csv; header=present"])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=_LINE,
    text=_TEXT,
    html=_TEXT,
    display=_NAME,
    attachments=st.lists(st.tuples(_FILE, _TYPE, st.binary(max_size=400)), max_size=3),
    key=st.text(max_size=20),
)
def test_any_message_gives_the_email_packages_bytes(subject, text, html, display, attachments, key):
    msg = ComposedMessage(subject.strip() or "s", text, html, tuple(Attachment(*a) for a in attachments))
    recipient = f"{display} <hanh@example.vn>" if display.strip() else "hanh@example.vn"
    mid = make_message_id(key)
    try:
        expected = legacy_mime_bytes(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW)
    except ValueError as error:
        with pytest.raises(type(error)):
            render_mime(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW)
        return
    assert render_mime(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW) == expected


_ATOM = st.text(st.sampled_from("abcXYZ019_+-"), min_size=1, max_size=12)
_LABEL = st.text(st.sampled_from("abz09-"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(local=st.lists(_ATOM, min_size=1, max_size=3), domain=st.lists(_LABEL, min_size=1, max_size=3))
def test_plain_addresses_and_message_ids_are_written_as_the_email_package_writes_them(local, domain):
    addr = ".".join(local) + "@" + ".".join(domain)
    assert messages._to_header(addr) == messages._email_package_header("To", addr)
    mid = f"<{addr}>"
    assert messages._message_id_header(mid) == messages._email_package_header("Message-ID", mid)
