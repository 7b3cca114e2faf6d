"""A local SMTP sink for the demo and the tests: accepts mail on loopback and keeps it.

Each message is written as ``<NNNN>-<message-id slug>.eml`` in a directory, in the order
received, and kept in memory (envelope sender, recipients, ``EmailMessage``, parsed on first use). Faults
can be injected: ``fail_next(n, code, text, stage)`` answers the next ``n`` RCPT or DATA
commands with an error, ``set_mode("tempfail" | "permfail" | "ok")`` does so until changed.

The server (aiosmtpd's ``Controller``) runs its own event loop in its own thread, so
synchronous code can use it::

    with MailSink(tmp_path) as sink:
        ...  # send to 127.0.0.1:sink.port
        assert sink.received[0].message["Subject"] == ...

No settings: the demo passes the directory and, if it wants a fixed one, the port.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

Stage = Literal["rcpt", "data"]
Mode = Literal["ok", "tempfail", "permfail"]

TEMPFAIL_REPLY = "451 4.3.0 Temporary local problem, try again later"
PERMFAIL_REPLY = "550 5.1.1 Mailbox unavailable"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    path: Path
    raw: bytes

    @cached_property
    def message(self) -> EmailMessage:
        """The parsed message, parsed on first use: a province's morning is ~100 MB of mail,
        and parsing it all on arrival would slow the server (and a sender in the same process)."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @cached_property
    def headers(self) -> EmailMessage:
        """The header block only: cheap, whatever the size of the body."""
        return _parse_headers(self.raw)

    @property
    def message_id(self) -> str | None:
        value = self.headers["Message-ID"]
        return None if value is None else str(value)


def _parse_headers(raw: bytes) -> EmailMessage:
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw[:end])  # type: ignore[return-value]


@dataclass
class _Fault:
    remaining: int
    reply: str
    stage: Stage


def message_id_slug(message_id: str | None, limit: int = 60) -> str:
    """File-name-safe slug of a Message-ID (``<abc@host>`` → ``abc-host``)."""
    value = (message_id or "").strip().strip("<>")
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-.")
    return value[:limit] or "no-message-id"


class _Handler:
    def __init__(self, sink: MailSink):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        fault = self.sink._take_fault("rcpt")
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        fault = self.sink._take_fault("data")
        if fault:
            return fault
        stored = self.sink._store(envelope.mail_from, envelope.rcpt_tos, envelope.content)
        return f"250 2.0.0 OK queued as {stored.path.name}"


class _LoopbackController(Controller):
    """aiosmtpd's Controller, able to bind port 0 and report the port it got."""

    def _create_server(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.hostname, self.port))
        self.port = sock.getsockname()[1]  # read by _trigger_server and by MailSink.port
        return self.loop.create_server(self._factory_invoker, sock=sock, ssl=self.ssl_context)


class MailSink:
    """Local SMTP server on ``host`` (127.0.0.1) and ``port`` (0 = any free port)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
    ):
        self.directory = Path(directory)
        self.host = host
        self._requested_port = port
        self._credentials = dict(credentials) if credentials else None
        self._lock = threading.Condition()
        self._received: list[ReceivedMail] = []
        self._faults: list[_Fault] = []
        self._mode: Mode = "ok"
        self.logins: list[str] = []
        self._counter = 0
        self._controller: _LoopbackController | None = None

    # -------------------------------------------------------------------------- lifecycle

    def start(self) -> MailSink:
        if self._controller is not None:
            raise RuntimeError("mail sink already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Continue numbering after what an earlier run left, so nothing is overwritten.
        self._counter = len(list(self.directory.glob("*.eml")))
        kwargs: dict[str, Any] = {"server_hostname": "kiemdiem-sink", "ready_timeout": 5.0}
        if self._credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = _LoopbackController(
            _Handler(self), hostname=self.host, port=self._requested_port, **kwargs
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("mail sink not running")
        return self._controller.port

    # ------------------------------------------------------------------------ what arrived

    @property
    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least ``count`` messages arrived; raises TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(f"{len(self._received)} of {count} messages arrived")
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    # ---------------------------------------------------------------------------- faults

    def fail_next(
        self, n: int = 1, code: int = 421, text: str = "4.3.0 Try later", *, stage: Stage = "data"
    ) -> None:
        """Answer the next ``n`` commands of ``stage`` ("rcpt" or "data") with ``code text``."""
        if stage not in ("rcpt", "data"):
            raise ValueError(f"stage must be 'rcpt' or 'data', not {stage!r}")
        with self._lock:
            self._faults.append(_Fault(n, f"{code} {text}".strip(), stage))

    def set_mode(self, mode: Mode) -> None:
        """"ok": accept; "tempfail": DATA gets 451; "permfail": RCPT gets 550. Until changed."""
        if mode not in ("ok", "tempfail", "permfail"):
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self._mode = mode

    def _take_fault(self, stage: Stage) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage and fault.remaining > 0:
                    fault.remaining -= 1
                    reply = fault.reply
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return reply
            if self._mode == "tempfail" and stage == "data":
                return TEMPFAIL_REPLY
            if self._mode == "permfail" and stage == "rcpt":
                return PERMFAIL_REPLY
            return None

    # ---------------------------------------------------------------------------- storing

    def _store(self, mail_from: str, rcpt_tos: list[str], content: bytes | str) -> ReceivedMail:
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        headers = _parse_headers(raw)
        with self._lock:
            self._counter += 1
            path = self.directory / f"{self._counter:04d}-{message_id_slug(headers['Message-ID'])}.eml"
            path.write_bytes(raw)
            mail = ReceivedMail(mail_from, tuple(rcpt_tos), path, raw)
            mail.__dict__["headers"] = headers
            self._received.append(mail)
            self._lock.notify_all()
        return mail

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._credentials is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8")
        ok = self._credentials.get(login) == auth_data.password.decode("utf-8")
        if ok:
            with self._lock:
                self.logins.append(login)
        return AuthResult(success=ok, handled=False)
