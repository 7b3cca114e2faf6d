"""The SMTP transport against a real aiosmtpd server (MailSink) on loopback."""

from __future__ import annotations

import asyncio
import email.policy
import socket
import subprocess
import sys
import types
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from kiemdiem.notify.messages import ComposedMessage, build_mime, compose_invite, make_message_id
from kiemdiem.notify.sink import MailSink, message_id_slug
from kiemdiem.notify.transport import SendStatus, SmtpTransport, resolve_password
from kiemdiem.settings import PROJECT_ROOT, SmtpSettings

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2023, 11, 30, 8, 0, tzinfo=HCM)
SENDER = "Văn phòng Đảng ủy <vanphong@kiemdiem.local>"


def settings_for(port: int, **overrides) -> SmtpSettings:
    values = dict(host="127.0.0.1", port=port, user=None, password=None, password_block=None,
                  starttls=False, timeout=5.0)
    values.update(overrides)
    return SmtpSettings(**values)


def invite_mime(key: str = "invite:1", recipient: str = "Nguyễn Thị Hạnh <hanh@example.vn>"):
    composed = compose_invite("Đồng chí Hạnh", "Chi bộ Văn phòng Sở",
                              "http://127.0.0.1:8080/dang-nhap?token=abc", NOW)
    return build_mime(composed, sender=SENDER, recipient=recipient,
                      message_id=make_message_id(key), date=NOW)


def send_all(settings: SmtpSettings, *messages):
    async def run():
        async with SmtpTransport(settings) as transport:
            return [await transport.send(m) for m in messages]

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sink(tmp_path):
    with MailSink(tmp_path / "mail") as running:
        yield running


# ------------------------------------------------------------------------------- delivery


def test_message_arrives_with_its_message_id(sink):
    mime = invite_mime()
    (outcome,) = send_all(settings_for(sink.port), mime)
    assert outcome.status is SendStatus.ACCEPTED and outcome.accepted
    assert outcome.code == 250 and outcome.error_type is None
    (mail,) = sink.received
    assert mail.message["Message-ID"] == mime["Message-ID"] == make_message_id("invite:1")
    assert mail.message["Subject"] == "Đường dẫn đăng nhập cổng nộp hồ sơ – Chi bộ Văn phòng Sở"
    assert mail.mail_from == "vanphong@kiemdiem.local"
    assert mail.rcpt_tos == ("hanh@example.vn",)
    assert mail.path.name == f"0001-{message_id_slug(mime['Message-ID'])}.eml"
    assert mail.path.read_bytes() == mail.raw
    assert "token=abc" in mail.message.get_body(("plain",)).get_content()


def test_a_batch_shares_one_connection_and_keeps_order(sink):
    messages = [invite_mime(f"invite:{i}", f"u{i}@example.vn") for i in range(5)]

    async def run():
        async with SmtpTransport(settings_for(sink.port)) as transport:
            outcomes = []
            for m in messages:
                outcomes.append(await transport.send(m))
                assert transport.connected
            return outcomes

    assert all(o.accepted for o in asyncio.run(run()))
    received = sink.wait_for(5)
    assert [m.rcpt_tos for m in received] == [(f"u{i}@example.vn",) for i in range(5)]
    assert sorted(p.name[:4] for p in sink.directory.glob("*.eml")) == [
        "0001", "0002", "0003", "0004", "0005"]


def test_a_resend_reuses_the_message_id_and_keeps_both_files(sink):
    mime = invite_mime("invite:same")
    send_all(settings_for(sink.port), mime, mime)
    first, second = sink.received
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.path != second.path and first.path.exists() and second.path.exists()


# -------------------------------------------------------------------------------- failures


def test_421_is_temporary_and_the_next_message_reconnects(sink):
    sink.fail_next(1, code=421, text="4.3.0 Try later")
    first, second = send_all(settings_for(sink.port), invite_mime("a"), invite_mime("b"))
    assert first.status is SendStatus.TEMPORARY and first.temporary
    assert (first.code, first.message) == (421, "4.3.0 Try later")
    assert first.error_type == "SMTPDataError"
    assert second.accepted  # the client closed after 421; the transport reconnected
    assert [m.message["Message-ID"] for m in sink.received] == [make_message_id("b")]


def test_451_is_temporary(sink):
    sink.set_mode("tempfail")
    (outcome,) = send_all(settings_for(sink.port), invite_mime())
    assert outcome.temporary and outcome.code == 451
    assert sink.received == []


def test_451_on_rcpt_is_temporary(sink):
    sink.fail_next(1, code=451, text="4.7.1 Greylisted", stage="rcpt")
    (outcome,) = send_all(settings_for(sink.port), invite_mime())
    assert outcome.temporary and outcome.code == 451
    assert [(r.recipient, r.code) for r in outcome.refused] == [("hanh@example.vn", 451)]


def test_550_is_permanent(sink):
    sink.set_mode("permfail")
    (outcome,) = send_all(settings_for(sink.port), invite_mime())
    assert outcome.status is SendStatus.PERMANENT and outcome.permanent
    assert (outcome.code, outcome.message) == (550, "5.1.1 Mailbox unavailable")
    assert outcome.as_dict() == {
        "status": "permanent", "code": 550, "message": "5.1.1 Mailbox unavailable",
        "error_type": "SMTPRecipientsRefused",
        "refused": [{"recipient": "hanh@example.vn", "code": 550,
                     "message": "5.1.1 Mailbox unavailable"}],
    }
    sink.set_mode("ok")
    assert send_all(settings_for(sink.port), invite_mime())[0].accepted


def test_554_at_data_is_permanent_and_the_connection_stays_usable(sink):
    sink.fail_next(1, code=554, text="5.7.1 Rejected", stage="data")
    first, second = send_all(settings_for(sink.port), invite_mime("a"), invite_mime("b"))
    assert first.permanent and first.code == 554
    assert second.accepted


def test_fail_next_counts_down(sink):
    sink.fail_next(2, code=421, text="4.3.0 Busy")
    outcomes = send_all(settings_for(sink.port), *[invite_mime(str(i)) for i in range(3)])
    assert [o.status for o in outcomes] == [SendStatus.TEMPORARY, SendStatus.TEMPORARY,
                                            SendStatus.ACCEPTED]


def test_server_down_is_a_temporary_outcome_not_an_exception():
    (outcome,) = send_all(settings_for(free_port()), invite_mime())
    assert outcome.temporary
    assert outcome.code is None
    assert outcome.error_type and outcome.message


def test_server_that_never_answers_times_out_as_temporary():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        (outcome,) = send_all(settings_for(port, timeout=0.3), invite_mime())
    assert outcome.temporary and outcome.code is None


def test_a_dropped_connection_is_reopened(tmp_path):
    directory = tmp_path / "mail"

    async def run():
        with MailSink(directory) as first_sink:
            port = first_sink.port
            settings = settings_for(port)
            async with SmtpTransport(settings) as transport:
                assert (await transport.send(invite_mime("a"))).accepted
                first_sink.stop()  # the server goes away while the connection is idle
                down = await transport.send(invite_mime("b"))
                with MailSink(directory, port=port) as second_sink:
                    again = await transport.send(invite_mime("c"))
                    return down, again, second_sink.received

    down, again, received = asyncio.run(run())
    assert down.temporary
    assert again.accepted
    assert [m.message["Message-ID"] for m in received] == [make_message_id("c")]
    assert len(list(directory.glob("*.eml"))) == 2  # numbering continued, nothing overwritten


def test_a_message_without_recipients_is_permanent(sink):
    mime = build_mime(ComposedMessage("s", "t", "h"), sender=SENDER, recipient="a@example.vn",
                      message_id="<x@y>", date=NOW)
    del mime["To"]
    (outcome,) = send_all(settings_for(sink.port), mime)
    assert outcome.permanent and outcome.error_type == "ValueError"


# ---------------------------------------------------------------- one message in two steps


def rendered(key: str = "invite:1", recipient: str = "hanh@example.vn") -> bytes:
    return invite_mime(key, recipient).as_bytes(policy=email.policy.SMTP)


def in_two_steps(settings: SmtpSettings, *messages: tuple[str, bytes], between=None):
    """begin + finish for each (recipient, bytes); ``between(transport)`` runs between the steps."""

    async def run():
        outcomes = []
        async with SmtpTransport(settings) as transport:
            for recipient, data in messages:
                opened = await transport.begin("vanphong@kiemdiem.local", [recipient], size=len(data))
                if between is not None:
                    await between(transport)
                outcomes.append(opened if opened is not None else await transport.finish(data))
        return outcomes

    return asyncio.run(run())


def test_begin_delivers_nothing_and_finish_delivers_the_bytes_as_given(sink):
    data = rendered()
    arrived_before_finish = []

    async def look(transport):
        await asyncio.sleep(0.2)
        arrived_before_finish.append(len(sink.received))

    (outcome,) = in_two_steps(settings_for(sink.port), ("hanh@example.vn", data), between=look)
    assert arrived_before_finish == [0]
    assert outcome.accepted and outcome.code == 250
    (mail,) = sink.received
    assert mail.raw == data
    assert (mail.mail_from, mail.rcpt_tos) == ("vanphong@kiemdiem.local", ("hanh@example.vn",))


def test_send_bytes_is_begin_then_finish(sink):
    data = rendered()

    async def run():
        async with SmtpTransport(settings_for(sink.port)) as transport:
            return await transport.send_bytes(data, sender="vanphong@kiemdiem.local", recipients=["hanh@example.vn"])

    assert asyncio.run(run()).accepted
    assert sink.received[0].raw == data


def test_a_refused_envelope_is_the_outcome_and_the_connection_carries_on(sink):
    sink.fail_next(1, code=550, text="5.1.1 Mailbox unavailable", stage="rcpt")
    refused, accepted = in_two_steps(settings_for(sink.port), ("a@example.vn", rendered("a", "a@example.vn")),
                                     ("b@example.vn", rendered("b", "b@example.vn")))
    assert refused.permanent and refused.code == 550 and refused.error_type == "SMTPRecipientsRefused"
    assert [(r.recipient, r.code) for r in refused.refused] == [("a@example.vn", 550)]
    assert accepted.accepted
    assert [m.rcpt_tos for m in sink.received] == [("b@example.vn",)]


def test_a_refusal_at_finish_resets_the_envelope_for_the_next_message(sink):
    sink.fail_next(1, code=554, text="5.7.1 Rejected", stage="data")
    first, second = in_two_steps(settings_for(sink.port), ("a@example.vn", rendered("a", "a@example.vn")),
                                 ("b@example.vn", rendered("b", "b@example.vn")))
    assert first.permanent and first.code == 554
    assert second.accepted and [m.rcpt_tos for m in sink.received] == [("b@example.vn",)]


def test_an_address_that_cannot_be_sent_is_permanent_and_leaves_no_envelope_open(sink):
    bad, good = in_two_steps(settings_for(sink.port), ("hạnh@example.vn", rendered("a")), ("hanh@example.vn", rendered("b")))
    assert bad.permanent
    assert good.accepted and len(sink.received) == 1


def test_server_down_at_begin_is_a_temporary_outcome():
    (outcome,) = in_two_steps(settings_for(free_port()), ("hanh@example.vn", rendered()))
    assert outcome.temporary and outcome.code is None


def test_a_connection_lost_between_the_steps_is_temporary_and_the_next_message_reconnects(tmp_path):
    directory = tmp_path / "mail"

    async def run():
        with MailSink(directory) as first_sink:
            port = first_sink.port
            async with SmtpTransport(settings_for(port)) as transport:
                assert await transport.begin("vanphong@kiemdiem.local", ["a@example.vn"]) is None
                first_sink.stop()  # the server goes away after the envelope
                lost = await transport.finish(rendered("a", "a@example.vn"))
                with MailSink(directory, port=port) as second_sink:
                    again = await transport.send_bytes(rendered("b", "b@example.vn"), sender="vanphong@kiemdiem.local",
                                                       recipients=["b@example.vn"])
                    return lost, again, second_sink.received

    lost, again, received = asyncio.run(run())
    assert lost.temporary
    assert again.accepted and [m.rcpt_tos for m in received] == [("b@example.vn",)]


def test_the_steps_go_in_order(sink):
    async def run():
        async with SmtpTransport(settings_for(sink.port)) as transport:
            with pytest.raises(RuntimeError):
                await transport.finish(b"no envelope")
            assert await transport.begin("vanphong@kiemdiem.local", ["a@example.vn"]) is None
            with pytest.raises(RuntimeError):
                await transport.begin("vanphong@kiemdiem.local", ["b@example.vn"])
            return await transport.finish(rendered("a", "a@example.vn"))

    assert asyncio.run(run()).accepted


# ---------------------------------------------------------------------------- credentials


def test_login_with_the_configured_password(tmp_path):
    with MailSink(tmp_path, credentials={"vanphong": "bí mật"}) as sink:
        ok, = send_all(settings_for(sink.port, user="vanphong", password="bí mật"), invite_mime())
        wrong, = send_all(settings_for(sink.port, user="vanphong", password="sai"), invite_mime())
        assert ok.accepted and sink.logins == ["vanphong"]
        assert wrong.temporary and wrong.code == 535  # configuration, not the message
        assert wrong.error_type == "SMTPAuthenticationError"
        assert len(sink.received) == 1


def test_resolve_password_plain():
    assert resolve_password(settings_for(25, password="pw")) == "pw"
    assert resolve_password(settings_for(25)) is None


def test_resolve_password_from_a_prefect_secret_block(monkeypatch):
    loaded = []

    class FakeSecret:
        @classmethod
        def load(cls, name, _sync=None):
            loaded.append((name, _sync))
            return types.SimpleNamespace(get=lambda: "from-block")

    fake_system = types.ModuleType("prefect.blocks.system")
    fake_system.Secret = FakeSecret
    monkeypatch.setitem(sys.modules, "prefect", types.ModuleType("prefect"))
    monkeypatch.setitem(sys.modules, "prefect.blocks", types.ModuleType("prefect.blocks"))
    monkeypatch.setitem(sys.modules, "prefect.blocks.system", fake_system)
    settings = settings_for(25, password="ignored", password_block="smtp-password")
    assert resolve_password(settings) == "from-block"
    assert loaded == [("smtp-password", True)]


def test_a_failing_password_lookup_is_a_temporary_outcome(monkeypatch):
    def broken(settings):
        raise RuntimeError("no such block")

    monkeypatch.setattr("kiemdiem.notify.transport.resolve_password", broken)
    (outcome,) = send_all(settings_for(free_port(), password_block="x"), invite_mime())
    assert outcome.temporary and "no such block" in outcome.message


def test_importing_the_notify_package_does_not_import_prefect():
    code = ("import sys, kiemdiem.notify.transport, kiemdiem.notify.messages, "
            "kiemdiem.notify.sink; print('prefect' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, check=True)
    assert result.stdout.strip() == "False"
