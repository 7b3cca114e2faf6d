"""Settings follow the environment at call time, though a parse is reused while it is unchanged."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from deployments.cli import app
from kiemdiem import steps
from kiemdiem.errors import InvalidInput
from kiemdiem.plan import load_plan
from kiemdiem.settings import ReminderSettings, SmtpSettings, reminder_settings, smtp_settings, store_settings
from kiemdiem.store.organization import campaign_plan, create_campaign, import_organization
from tests.support import PLANS, ict, write_small_org


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


# --- the sending window (KIEMDIEM_REMINDERS_WORK_START / _WORK_END) ----------------------------


def test_the_sending_window_of_a_loaded_plan_follows_the_environment(monkeypatch):
    """08:00–11:00: a reminder due at 07:45 waits until 08:00, one due at 11:30 until the next working morning."""
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_START", "08:00")
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_END", "11:00")
    assert reminder_settings().work_hours == (dt.time(8, 0), dt.time(11, 0))
    calendar = load_plan(PLANS / "187-KH-DU-2023.yaml").calendar
    assert not calendar.is_working_time(ict(2023, 12, 7, 7, 45))
    assert calendar.next_working_instant(ict(2023, 12, 7, 7, 45)) == ict(2023, 12, 7, 8, 0)
    assert calendar.is_working_time(ict(2023, 12, 7, 10, 59))
    assert calendar.next_working_instant(ict(2023, 12, 7, 11, 30)) == ict(2023, 12, 8, 8, 0)
    assert calendar.next_working_instant(ict(2023, 12, 8, 11, 30)) == ict(2023, 12, 11, 8, 0)  # Friday: Monday


def test_the_tick_composes_and_sends_only_inside_the_window_the_environment_sets(store, tmp_path, monkeypatch):
    """The tick's own gates (compose, send) read the window of the plan the store gives back."""
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_START", "08:00")
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_END", "11:00")
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, load_plan(PLANS / "187-KH-DU-2023.yaml"), "c187", ict(2023, 11, 20, 8))
        import_organization(uow, "c187", units, members, ict(2023, 11, 20, 8))
        uow.commit()
        plan = campaign_plan(uow, "c187")
    settings, smtp = ReminderSettings(), SmtpSettings(port=1)  # nothing may reach a server outside the window
    early, late = ict(2023, 12, 7, 7, 45), ict(2023, 12, 7, 11, 30)
    assert steps.plan_reminders(store, plan, "c187", early, steps.open_phase_ids(plan, early), settings) > 0
    for outside in (early, late):
        assert steps.compose(store, plan, "c187", outside, settings, smtp).deferred
        assert asyncio.run(steps.send_outbox(store, plan, "c187", outside, smtp, settings)).sent == 0
    report = steps.compose(store, plan, "c187", ict(2023, 12, 7, 8, 0), settings, smtp)
    assert not report.deferred and report.digests > 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KIEMDIEM_REMINDERS_WORK_START", "25:00"),
        ("KIEMDIEM_REMINDERS_WORK_START", "abc"),
        ("KIEMDIEM_REMINDERS_WORK_START", "7h30"),
        ("KIEMDIEM_REMINDERS_WORK_END", "24:00"),
        ("KIEMDIEM_REMINDERS_WORK_END", "16:60"),
    ],
)
def test_a_bad_working_hour_is_refused_naming_the_variable_and_the_value(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    for _ in range(2):  # not cached as good either
        with pytest.raises(InvalidInput) as refused:
            reminder_settings()
        message = str(refused.value)
        assert variable in message and f"'{value}'" in message and "HH:MM" in message


def test_a_window_that_ends_before_it_starts_is_refused(monkeypatch):
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_START", "17:00")
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_END", "8:00")
    with pytest.raises(InvalidInput, match="KIEMDIEM_REMINDERS_WORK_START=17:00 phải trước giờ kết thúc KIEMDIEM_REMINDERS_WORK_END=08:00"):
        reminder_settings()


def test_the_command_line_refuses_a_bad_window_with_a_non_zero_exit(monkeypatch):
    monkeypatch.setenv("KIEMDIEM_REMINDERS_WORK_END", "25:00")
    result = CliRunner().invoke(app, ["plan", "check", str(PLANS / "187-KH-DU-2023.yaml")], catch_exceptions=False)
    assert result.exit_code == 2
    assert "biến môi trường KIEMDIEM_REMINDERS_WORK_END: giờ không hợp lệ: '25:00'" in " ".join(result.output.split())
