"""Settings follow the environment at call time, though a parse is reused while it is unchanged."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kiemdiem.settings import reminder_settings, smtp_settings, store_settings


def test_a_changed_variable_is_seen_by_the_next_call(monkeypatch):
    monkeypatch.delenv("KIEMDIEM_SMTP_PORT", raising=False)
    assert smtp_settings().port == 1025
    monkeypatch.setenv("KIEMDIEM_SMTP_PORT", "2525")
    assert smtp_settings().port == 2525
    monkeypatch.setenv("KIEMDIEM_SMTP_FROM", "Ban Tổ chức <btc@example.vn>")  # the alias counts too
    assert smtp_settings().from_ == "Ban Tổ chức <btc@example.vn>"
    monkeypatch.delenv("KIEMDIEM_SMTP_PORT")
    assert smtp_settings().port == 1025


def test_a_variable_in_lower_case_is_read_like_pydantic_reads_it(monkeypatch):
    monkeypatch.delenv("KIEMDIEM_REMINDERS_BATCH_SIZE", raising=False)
    monkeypatch.setenv("kiemdiem_reminders_batch_size", "77")
    assert reminder_settings().batch_size == 77
    monkeypatch.setenv("kiemdiem_reminders_batch_size", "78")  # only the lower-case name changes
    assert reminder_settings().batch_size == 78


def test_a_value_changed_while_it_was_parsed_is_not_kept_for_later(monkeypatch):
    """Another thread may change the environment between the cache's look and pydantic's read."""
    import kiemdiem.settings as settings

    monkeypatch.setenv("KIEMDIEM_SMTP_PORT", "5")
    original_init = settings.SmtpSettings.__init__
    changed = []

    def init_while_changing(self, *args, **kwargs):
        if not changed:
            changed.append(True)
            monkeypatch.setenv("KIEMDIEM_SMTP_PORT", "99")
        original_init(self, *args, **kwargs)

    settings._parsed.pop(settings.SmtpSettings, None)
    monkeypatch.setattr(settings.SmtpSettings, "__init__", init_while_changing)
    assert smtp_settings().port == 99  # what the parse read
    monkeypatch.setattr(settings.SmtpSettings, "__init__", original_init)
    monkeypatch.setenv("KIEMDIEM_SMTP_PORT", "5")
    assert smtp_settings().port == 5  # not the 99 filed under the state "5"


def test_each_call_gets_its_own_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("KIEMDIEM_HOME", str(tmp_path))
    first = store_settings()
    first.home = tmp_path / "elsewhere"
    assert store_settings().home == tmp_path


def test_a_bad_value_is_still_refused_on_every_call(monkeypatch):
    monkeypatch.setenv("KIEMDIEM_SMTP_PORT", "không phải số")
    for _ in range(2):
        with pytest.raises(ValidationError, match="port"):
            smtp_settings()
