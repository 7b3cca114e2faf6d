"""The SMTP transport: hands one message at a time to an SMTP server.

It only talks SMTP. It writes nothing to a database and never retries: each message ends in
a ``SendOutcome`` (accepted, temporary failure, permanent failure, with the SMTP code and
text) and the outbox decides what to do with it. A message goes whole (``send`` for an
``EmailMessage``, ``send_bytes`` for rendered bytes) or in the two steps of its SMTP
transaction, ``begin`` (MAIL FROM, RCPT TO) and ``finish`` (DATA), so that the caller can
record the previous message's answer while the envelope goes out. Within ``async with
SmtpTransport(...)`` one connection is reused for a batch; a connection the server dropped is
reopened before the next message, which is a reconnection, not a retry: that message has
not been sent yet.

Tuned by ``SmtpSettings`` (``KIEMDIEM_SMTP_*``): host, port, user, password or
password_block (a Prefect Secret block), starttls, timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from kiemdiem.settings import SmtpSettings


class SendStatus(StrEnum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"  # 4xx, connection refused or lost, timeout: try again later
    PERMANENT = "permanent"  # 5xx or a message no server will take: do not try again


@dataclass(frozen=True)
class RefusedRecipient:
    recipient: str
    code: int
    message: str


# Our settings, not the message, are wrong: a login refused, no password, a server without AUTH.
CONFIGURATION_ERRORS = frozenset(("SMTPAuthenticationError", "PasswordLookupError", "SMTPAuthUnavailable"))


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one message, as data the outbox can store on its row."""

    status: SendStatus
    code: int | None = None  # SMTP reply code, None when no reply (connection, timeout)
    message: str = ""  # server reply text or the error's description
    error_type: str | None = None  # e.g. "SMTPDataError", "SMTPConnectError"; None if accepted
    refused: tuple[RefusedRecipient, ...] = field(default=())  # recipients the server refused

    @property
    def accepted(self) -> bool:
        return self.status is SendStatus.ACCEPTED

    @property
    def temporary(self) -> bool:
        return self.status is SendStatus.TEMPORARY

    @property
    def permanent(self) -> bool:
        return self.status is SendStatus.PERMANENT

    @property
    def configuration(self) -> bool:
        """Every message fails so until the settings are fixed (``CONFIGURATION_ERRORS``)."""
        return self.error_type in CONFIGURATION_ERRORS

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "code": self.code,
            "message": self.message,
            "error_type": self.error_type,
            "refused": [
                {"recipient": r.recipient, "code": r.code, "message": r.message}
                for r in self.refused
            ],
        }


def resolve_password(settings: SmtpSettings) -> str | None:
    """The SMTP password: from the Prefect Secret block ``password_block`` if named, else
    ``settings.password``."""
    if not settings.password_block:
        return settings.password
    # The one place kiemdiem's core touches prefect: imported here, only when a block is
    # named, so that importing kiemdiem never imports prefect (STYLE.md: the core is
    # independent of the orchestrator).
    from prefect.blocks.system import Secret

    # _sync=True: Secret.load would otherwise return a coroutine inside an async context.
    return str(Secret.load(settings.password_block, _sync=True).get())


def _classify_code(code: int) -> SendStatus:
    return SendStatus.PERMANENT if 500 <= code < 600 else SendStatus.TEMPORARY


def outcome_from_error(error: BaseException) -> SendOutcome:
    """Map an aiosmtplib (or socket) error to a SendOutcome."""
    kind = type(error).__name__
    if isinstance(error, SMTPRecipientsRefused):
        refused = tuple(
            RefusedRecipient(r.recipient, r.code, r.message) for r in error.recipients
        )
        # Permanent only if every refusal is permanent; any 4xx means "maybe later".
        status = (
            SendStatus.PERMANENT
            if refused and all(_classify_code(r.code) is SendStatus.PERMANENT for r in refused)
            else SendStatus.TEMPORARY
        )
        first = refused[0] if refused else None
        return SendOutcome(
            status, first.code if first else None, first.message if first else str(error),
            kind, refused,
        )
    if isinstance(error, SMTPAuthenticationError):
        # A rejected login is about our configuration, not this message: once fixed, the
        # message can go. Temporary, so the outbox keeps it.
        return SendOutcome(SendStatus.TEMPORARY, error.code, error.message, kind)
    if isinstance(error, SMTPResponseException):
        return SendOutcome(_classify_code(error.code), error.code, error.message, kind)
    if isinstance(error, SMTPNotSupported):
        # e.g. a non-ASCII address and no SMTPUTF8: resending will not help.
        return SendOutcome(SendStatus.PERMANENT, None, str(error), kind)
    if isinstance(error, ValueError):
        # aiosmtplib refuses a message without sender/recipients or with a malformed address.
        return SendOutcome(SendStatus.PERMANENT, None, str(error), kind)
    if type(error) is SMTPException and "AUTH" in str(error):
        # aiosmtplib's login on a server that offers no AUTH: a user is set where none is needed.
        return SendOutcome(SendStatus.TEMPORARY, None, str(error), "SMTPAuthUnavailable")
    # Connection refused/lost, timeouts, other SMTP protocol trouble.
    return SendOutcome(SendStatus.TEMPORARY, None, str(error) or kind, kind)


_CONNECTION_ERRORS = (SMTPException, OSError, asyncio.TimeoutError)


IDLE_CHECK_SECONDS = 15.0  # a connection used more recently than this is trusted without a NOOP


class SmtpTransport:
    """A thin aiosmtplib wrapper. Use as ``async with SmtpTransport(settings) as t:``.

    The connection opens on the first message (so a server that is down yields an outcome,
    not an exception) and is reused until the block ends. A message goes either whole
    (``send``, ``send_bytes``) or in the two steps of one SMTP transaction: ``begin`` (MAIL
    FROM, RCPT TO) then ``finish`` (DATA). Only ``finish`` can deliver anything, so a caller
    may do other work between the steps, such as recording the previous message's answer.
    """

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._password: str | None = None
        self._password_resolved = False
        self._last_used = 0.0
        self._refused: tuple[RefusedRecipient, ...] | None = None  # set while an envelope is open

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def aclose(self) -> None:
        """QUIT politely (an open envelope is dropped by the server); a connection that is
        already gone is just forgotten."""
        self._refused = None
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except _CONNECTION_ERRORS:
            smtp.close()

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> SendOutcome:
        """Deliver one message to the server. Envelope from the headers unless given."""

        async def transmit(smtp: aiosmtplib.SMTP) -> SendOutcome:
            errors, response = await smtp.send_message(message, sender=sender, recipients=recipients)
            return _accepted(250, response, _refusals(errors))

        return await self._exchange(transmit, connect=True)

    async def send_bytes(self, data: bytes, *, sender: str, recipients: list[str]) -> SendOutcome:
        """Deliver an already rendered message (CRLF line endings) as is."""
        refused = await self.begin(sender, recipients, size=len(data))
        return refused if refused is not None else await self.finish(data)

    async def begin(self, sender: str, recipients: list[str], *, size: int | None = None) -> SendOutcome | None:
        """Open the envelope of one message: MAIL FROM, then RCPT TO for each recipient.

        ``None`` when the server takes it for at least one recipient: ``finish`` sends the
        message. Otherwise the outcome of this message, of which nothing was sent.
        """
        if self._refused is not None:
            raise RuntimeError("begin() while an envelope is open: finish() it first")

        async def envelope(smtp: aiosmtplib.SMTP) -> None:
            if not recipients:
                raise ValueError("No recipients given")
            options = [f"size={size}"] if size is not None and smtp.supports_extension("size") else []
            refused: list[SMTPRecipientRefused] = []
            try:
                await smtp.mail(sender, options=options)
                for address in recipients:
                    try:
                        await smtp.rcpt(address)
                    except SMTPRecipientRefused as error:
                        refused.append(error)
                if len(refused) == len(recipients):
                    raise SMTPRecipientsRefused(refused)
            except Exception:
                # Refused, or an address that cannot go on a command line (ValueError, raised
                # before it is sent): leave no half-open envelope for the next message.
                await _reset(smtp)
                raise
            self._refused = tuple(RefusedRecipient(e.recipient, e.code, e.message) for e in refused)

        return await self._exchange(envelope, connect=True)

    async def finish(self, data: bytes) -> SendOutcome:
        """DATA for the envelope ``begin`` opened: the server's answer is the message's outcome."""
        refused, self._refused = self._refused, None
        if refused is None:
            raise RuntimeError("finish() without an envelope: begin() first")

        async def transmit(smtp: aiosmtplib.SMTP) -> SendOutcome:
            try:
                response = await smtp.data(data)
            except SMTPResponseException:
                await _reset(smtp)
                raise
            return _accepted(response.code, response.message, refused)

        return await self._exchange(transmit, connect=False)

    async def _exchange(self, step, *, connect: bool):
        """Run one step on the connection (opened or reopened first when ``connect``).
        Whatever goes wrong comes back as a SendOutcome, never as an exception."""
        if connect:
            if not self._password_resolved:
                try:
                    self._password = await asyncio.to_thread(resolve_password, self.settings)
                except Exception as error:  # noqa: BLE001 - whatever Prefect raises (no block, no API)
                    return SendOutcome(
                        SendStatus.TEMPORARY, None, f"password lookup failed: {error}",
                        "PasswordLookupError",
                    )
                self._password_resolved = True
            try:
                smtp = await self._connection()
            except _CONNECTION_ERRORS as error:
                self._forget()
                return outcome_from_error(error)
        elif self._smtp is not None:
            smtp = self._smtp
        else:  # the connection went away after begin()
            return outcome_from_error(SMTPServerDisconnected("Connection lost"))
        try:
            result = await step(smtp)
            self._last_used = time.monotonic()
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError, asyncio.TimeoutError) as error:
            self._forget()
            return outcome_from_error(error)
        except (SMTPException, ValueError) as error:
            if not smtp.is_connected:  # e.g. a 421 reply closes the connection
                self._forget()
            return outcome_from_error(error)
        return result

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return self._smtp
            try:
                await self._smtp.noop()  # the server may have dropped a connection left idle
                self._last_used = time.monotonic()
                return self._smtp
            except _CONNECTION_ERRORS:
                self._forget()
        self._forget()
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.user or None,
            password=self._password if s.user else None,
            start_tls=s.starttls,
            timeout=s.timeout,
        )
        await smtp.connect()
        try:
            if smtp.is_ehlo_or_helo_needed:  # the extensions (SIZE) are known after EHLO
                try:
                    await smtp.ehlo()
                except SMTPHeloError:
                    await smtp.helo()
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        self._last_used = time.monotonic()
        return smtp

    def _forget(self) -> None:
        self._refused = None
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _refusals(errors: dict) -> tuple[RefusedRecipient, ...]:
    return tuple(RefusedRecipient(address, reply.code, reply.message) for address, reply in errors.items())


def _accepted(code: int, message: str, refused: tuple[RefusedRecipient, ...]) -> SendOutcome:
    return SendOutcome(SendStatus.ACCEPTED, code, message, None, refused)


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the connection can carry the next message."""
    if not smtp.is_connected:
        return
    try:
        await smtp.rset()
    except _CONNECTION_ERRORS:
        pass  # the refusal is what to report; a connection this left broken is reopened next time
