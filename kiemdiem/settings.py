"""Settings, one class per concern, read from the environment at call time.

Every field has a default and an environment name (``KIEMDIEM_<FIELD>`` or
``KIEMDIEM_<CONCERN>_<FIELD>``). Nothing here is read at import time. Each call looks at the
environment; a concern's settings are parsed again only when its variables changed (pydantic
takes about a millisecond per parse, paid by every consolidation and every queued email).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kiemdiem.errors import InvalidInput, Problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StoreSettings(BaseSettings):
    """Where data lives: the database and the content-addressed file store."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_", extra="ignore")

    home: Path = Field(Path(".kiemdiem"), description="Data directory (SQLite file, blobs, inbox).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; defaults to a SQLite file under home."
    )
    auto_migrate: bool = Field(
        True,
        description="Bring the schema up to date when the store is opened. scripts/production.sh sets it false: "
        "there only `kiemdiem db upgrade` migrates (its upgrade, after a backup), and an outdated schema is refused.",
    )

    @property
    def url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.home / 'kiemdiem.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def inbox_dir(self) -> Path:
        return self.home / "inbox"

    @property
    def output_dir(self) -> Path:
        return self.home / "out"


class SmtpSettings(BaseSettings):
    """Outgoing mail. A Prefect Secret block named by ``password_block`` may hold the password."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_SMTP_", extra="ignore")

    host: str = Field("127.0.0.1", description="SMTP server host.")
    port: int = Field(1025, description="SMTP server port.")
    user: str | None = Field(None, description="SMTP user name.")
    password: str | None = Field(None, description="SMTP password (prefer a Prefect Secret block).")
    password_block: str | None = Field(None, description="Name of a Prefect Secret block with the password.")
    starttls: bool = Field(False, description="Use STARTTLS.")
    from_: str = Field(
        "Văn phòng Đảng ủy <vanphong@kiemdiem.local>", alias="KIEMDIEM_SMTP_FROM",
        description="From address.",
    )
    timeout: float = Field(30.0, description="Seconds before a send attempt gives up.")


class ReminderSettings(BaseSettings):
    """When reminders and escalations may be sent, and how failures are retried."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_REMINDERS_", extra="ignore")

    work_start: str = Field("07:30", description="Start of the sending window on working days (local).")
    work_end: str = Field("17:00", description="End of the sending window on working days (local).")
    due_soon_working_days: int = Field(3, description="A pending item becomes due_soon this many working days before its deadline.")
    max_attempts: int = Field(12, description="Failed sends are retried with backoff up to this many times, then kept as failed.")
    backoff_seconds: int = Field(60, description="First retry delay; doubles each attempt.")
    sending_lease_seconds: int = Field(600, description="A row stuck in 'sending' longer than this is returned to the queue.")
    batch_size: int = Field(500, description="Rows the sender claims per batch.")
    submit_url: str = Field("http://127.0.0.1:8080", description="Where units submit, named in emails.")
    drop_share: str = Field(
        "", description="The drop folder as those who may use it reach it (a share such as \\\\vanphong\\kiemdiem-nhan); "
        "empty: emails do not mention it (a branch secretary cannot reach the server's folder).",
    )

    @field_validator("work_start", "work_end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        # Strict HH:MM: "25:00" or "7h30" must be refused, not read as some other hour.
        match = _CLOCK.fullmatch(value.strip())
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(f"giờ không hợp lệ: '{value}' (dùng HH:MM, từ 00:00 đến 23:59, ví dụ 07:30)")
        return f"{int(match[1]):02d}:{match[2]}"

    @model_validator(mode="after")
    def _window_in_order(self) -> ReminderSettings:
        if self.work_start >= self.work_end:  # both are normalised "HH:MM": text order is time order
            raise ValueError(
                f"khung giờ gửi thư không hợp lệ: giờ bắt đầu {_ENV_NAMES['work_start']}={self.work_start} "
                f"phải trước giờ kết thúc {_ENV_NAMES['work_end']}={self.work_end}"
            )
        return self

    @property
    def work_hours(self) -> tuple[dt.time, dt.time]:
        """The sending window on working days, local clock: (start, end), end excluded."""
        start, end = (dt.time.fromisoformat(v) for v in (self.work_start, self.work_end))
        return start, end


_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_ENV_NAMES = {name: f"KIEMDIEM_REMINDERS_{name.upper()}" for name in ReminderSettings.model_fields}
_ENV_REASONS = {"int_parsing": "phải là một số nguyên", "int_type": "phải là một số nguyên"}


class WebSettings(BaseSettings):
    """The dashboard and submission portal."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_WEB_", extra="ignore")

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8080, description="Bind port.")
    secret_key: str | None = Field(None, description="Session signing key; generated into home if unset.")
    max_upload_mb: int = Field(20, description="Largest accepted upload, in MiB.")
    secure_cookies: bool = Field(False, description="Mark cookies Secure (behind HTTPS).")
    invite_hours: int = Field(72, description="How long an emailed sign-in link stays valid.")
    clock_start: str | None = Field(
        None, description="For a replay or a training session: the moment (dd/mm/yyyy HH:MM) the dashboard's clock "
        "shows when the server starts; it then runs on in real time. Unset: the real clock.",
    )


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


_Settings = TypeVar("_Settings", bound=BaseSettings)
_parsed: dict[type, tuple[tuple, BaseSettings]] = {}


def _environment_state(prefix: str) -> tuple:
    # Folded as pydantic-settings folds names (lower()), so the key covers every name it reads.
    return tuple(sorted((k.lower(), v) for k, v in os.environ.items() if k.lower().startswith(prefix)))


def _current(cls: type[_Settings]) -> _Settings:
    """``cls()`` as the environment is now, parsed again only when a variable it reads changed."""
    prefix = cls.model_config.get("env_prefix", "").lower()
    state = _environment_state(prefix)
    cached = _parsed.get(cls)
    if cached is not None and cached[0] == state:
        return cached[1].model_copy()  # a copy: a caller may change its own
    value = cls()
    if _environment_state(prefix) == state:  # not changed while it was parsed (another thread): else not kept
        _parsed[cls] = (state, value)
    return value.model_copy()


def store_settings() -> StoreSettings:
    return _current(StoreSettings)


def smtp_settings() -> SmtpSettings:
    return _current(SmtpSettings)


def reminder_settings() -> ReminderSettings:
    """The reminder settings; a bad value is an ``InvalidInput`` naming its variable and value,
    which the CLI prints and exits on (2), as for any bad input."""
    try:
        return _current(ReminderSettings)
    except ValidationError as exc:
        raise InvalidInput([_environment_problem(err) for err in exc.errors()]) from exc


def _environment_problem(err) -> Problem:
    if err["type"] == "value_error":
        reason = str(err["ctx"]["error"])
    else:
        reason = f"giá trị không hợp lệ: '{err.get('input')}' ({_ENV_REASONS.get(err['type'], err['msg'])})"
    if not err["loc"]:  # the window out of order: its reason names both variables
        return Problem("biến môi trường", reason)
    field = str(err["loc"][0])
    return Problem(f"biến môi trường {_ENV_NAMES.get(field, field)}", reason)


def web_settings() -> WebSettings:
    return _current(WebSettings)


def templates_dir() -> Path:
    return PROJECT_ROOT / "templates"


def plans_dir() -> Path:
    return PROJECT_ROOT / "plans"
