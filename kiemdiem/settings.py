"""Settings, one class per concern, read from the environment at call time.

Every field has a default and an environment name (``KIEMDIEM_<FIELD>`` or
``KIEMDIEM_<CONCERN>_<FIELD>``). Nothing here is read at import time. Each call looks at the
environment; a concern's settings are parsed again only when its variables changed (pydantic
takes about a millisecond per parse, paid by every consolidation and every queued email).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StoreSettings(BaseSettings):
    """Where data lives: the database and the content-addressed file store."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_", extra="ignore")

    home: Path = Field(Path(".kiemdiem"), description="Data directory (SQLite file, blobs, inbox).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; defaults to a SQLite file under home."
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


class WebSettings(BaseSettings):
    """The dashboard and submission portal."""

    model_config = SettingsConfigDict(env_prefix="KIEMDIEM_WEB_", extra="ignore")

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8080, description="Bind port.")
    secret_key: str | None = Field(None, description="Session signing key; generated into home if unset.")
    max_upload_mb: int = Field(20, description="Largest accepted upload, in MiB.")
    secure_cookies: bool = Field(False, description="Mark cookies Secure (behind HTTPS).")
    invite_hours: int = Field(72, description="How long an emailed sign-in link stays valid.")


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
    return _current(ReminderSettings)


def web_settings() -> WebSettings:
    return _current(WebSettings)


def templates_dir() -> Path:
    return PROJECT_ROOT / "templates"


def plans_dir() -> Path:
    return PROJECT_ROOT / "plans"
