"""``scripts/production.sh backup`` and ``restore`` against real PostgreSQL databases: what a backup
holds comes back, files and the dashboard's key included, and a restore without a backup is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from kiemdiem.settings import StoreSettings
from kiemdiem.store.db import open_store
from kiemdiem.store.models import Member
from kiemdiem.store.organization import create_campaign, import_organization
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.support import ict, write_small_org

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "production.sh"


@pytest.fixture
def databases():
    """Two fresh databases, as production has them: kiemdiem's and Prefect's (left empty here)."""
    require_postgres()
    names = [f"kiemdiem_restore_{os.getpid()}", f"prefect_restore_{os.getpid()}"]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{names[0]}", f"{base}/{names[1]}".replace("postgresql://", "postgresql+asyncpg://")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


def members(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM members").fetchone()[0]


def test_backup_then_restore_brings_back_the_databases_the_files_and_the_key(databases, tmp_path, plan_187):
    kiemdiem_url, prefect_url = databases
    home = tmp_path / "home"
    env = {
        **os.environ, "KIEMDIEM_HOME": str(home), "KIEMDIEM_DATABASE_URL": kiemdiem_url, "PREFECT_DATABASE_URL": prefect_url,
        "VENV": str(Path(sys.executable).parent.parent), "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    store = open_store(StoreSettings(home=home, database_url=kiemdiem_url))
    try:
        with store.uow() as uow:
            create_campaign(uow, plan_187, "c187", ict(2023, 11, 20))
            import_organization(uow, "c187", *write_small_org(tmp_path / "org"), ict(2023, 11, 20))
            uow.commit()
        blob, kept = store.blobs.path("ab" * 32), store.blobs.path("cd" * 32)
    finally:
        store.dispose()
    for path in (blob, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.4 bien ban")
    (home / "web-secret.key").write_text("khoa-phien")

    backup = run(env, "backup")
    assert backup.returncode == 0, backup.stderr
    [stamp] = [p.name for p in (home / "backups").iterdir() if p.name != "blobs"]
    assert f"restore: scripts/production.sh restore {stamp}" in backup.stdout

    # What a bad day does: rows deleted, a table a failed upgrade added, a file and the key lost.
    with psycopg.connect(kiemdiem_url, autocommit=True) as conn:
        conn.execute("DELETE FROM members")
        conn.execute("CREATE TABLE added_by_a_later_migration (id integer)")
    blob.unlink()
    (home / "web-secret.key").unlink()
    assert members(kiemdiem_url) == 0

    restored = run(env, "restore", stamp)
    assert restored.returncode == 0, restored.stderr
    assert f"restored {stamp}; next: scripts/production.sh start" in restored.stdout
    assert members(kiemdiem_url) == 7
    with psycopg.connect(kiemdiem_url) as conn:  # the database is the backup's, not the backup's over today's
        assert conn.execute("SELECT to_regclass('added_by_a_later_migration')").fetchone()[0] is None
    assert blob.read_bytes() == b"%PDF-1.4 bien ban" and kept.read_bytes() == b"%PDF-1.4 bien ban"
    assert (home / "web-secret.key").read_text() == "khoa-phien"

    # On a machine without the databases (a new server): restore makes them.
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{kiemdiem_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    assert run(env, "restore", stamp).returncode == 0
    assert members(kiemdiem_url) == 7
    # The restored database is at the newest schema: the store opens it without migrating.
    store = open_store(StoreSettings(home=home, database_url=kiemdiem_url))
    try:
        with store.uow() as uow:
            assert uow.session.scalar(select(func.count()).select_from(Member)) == 7
    finally:
        store.dispose()


def test_restore_without_a_backup_is_refused_and_lists_the_backups(databases, tmp_path):
    kiemdiem_url, prefect_url = databases
    home = tmp_path / "home"
    (home / "backups" / "20261121T010000Z").mkdir(parents=True)
    env = {**os.environ, "KIEMDIEM_HOME": str(home), "KIEMDIEM_DATABASE_URL": kiemdiem_url, "PREFECT_DATABASE_URL": prefect_url,
           "VENV": str(Path(sys.executable).parent.parent)}
    bare = run(env, "restore")
    assert bare.returncode == 2 and "usage: scripts/production.sh restore <backup>" in bare.stderr and "20261121T010000Z" in bare.stderr
    missing = run(env, "restore", "20261121T010000Z")  # a folder without its dumps
    assert missing.returncode == 2 and "no backup at" in missing.stdout


def test_a_log_over_its_limit_is_rotated_when_its_process_starts(tmp_path):
    """``rotate_log`` as ``spawn`` calls it (taken from the script itself): two generations kept."""
    log = tmp_path / "web.log"
    function = subprocess.run(["sed", "-n", "/^rotate_log() {/,/^}/p", str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    assert function.startswith("rotate_log() {")

    def start(limit_mb: int) -> None:
        subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}\nKIEMDIEM_LOG_MAX_MB={limit_mb}\nrotate_log {log}"], check=True)

    log.write_text("first run\n")
    start(1)  # under the limit: kept as it is
    assert log.read_text() == "first run\n" and not (tmp_path / "web.log.1").exists()
    start(0)
    assert not log.exists() and (tmp_path / "web.log.1").read_text() == "first run\n"
    log.write_text("second run\n")
    start(0)
    assert (tmp_path / "web.log.1").read_text() == "second run\n" and (tmp_path / "web.log.2").read_text() == "first run\n"
    start(0)  # no log yet since the last start: nothing to do
    assert (tmp_path / "web.log.1").read_text() == "second run\n"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_systemd_units_run_the_script_in_the_foreground_with_the_saved_configuration(tmp_path):
    """``systemd`` writes units that systemd accepts, and the configuration they read; every
    command of the script reads that configuration too, unless the shell sets a variable itself."""
    home = tmp_path / "home"
    env = {**os.environ, "KIEMDIEM_HOME": str(home), "KIEMDIEM_WORKERS": "3", "KIEMDIEM_SMTP_HOST": "mail.tinhuy.example.vn",
           "KIEMDIEM_DATABASE_URL": f"sqlite:///{tmp_path / 'kiemdiem.sqlite3'}", "KIEMDIEM_WEB_PORT": str(_free_port()),
           "KIEMDIEM_WEB_WORKERS": "1", "VENV": str(Path(sys.executable).parent.parent), "PREFECT_HOME": str(tmp_path / "prefect")}
    written = run(env, "systemd")
    assert written.returncode == 0, written.stderr
    units = home / "systemd"
    assert sorted(p.name for p in units.iterdir()) == [
        "kiemdiem-backup.service", "kiemdiem-backup.timer", "kiemdiem-prefect-server.service", "kiemdiem-web.service",
        "kiemdiem-worker@.service", "kiemdiem.target",
    ]
    target = (units / "kiemdiem.target").read_text()
    assert all(f"kiemdiem-worker@{i}.service" in target for i in (1, 2, 3)) and "kiemdiem-worker@4" not in target
    assert f'ExecStart="{SCRIPT}" run worker %i' in (units / "kiemdiem-worker@.service").read_text()
    saved = home / "kiemdiem.env"
    assert saved.stat().st_mode & 0o077 == 0  # names the databases and the mail account: the service user's only
    assert "KIEMDIEM_SMTP_HOST='mail.tinhuy.example.vn'\n" in saved.read_text()
    assert "OnCalendar=*-*-* 02:30:00 Asia/Ho_Chi_Minh" in (units / "kiemdiem-backup.timer").read_text()
    verify = shutil.which("systemd-analyze")
    if verify:  # Debian's systemd: the units' syntax, and that ExecStart names an executable
        checked = subprocess.run([verify, "verify", *map(str, sorted(units.iterdir()))], capture_output=True, text=True, cwd=units)
        assert checked.returncode == 0, checked.stderr

    # What a unit runs, with only what systemd gives it: the saved configuration (here read by the
    # script itself) and no shell variables; the dashboard stays in the foreground until stopped.
    migrated = subprocess.run([str(Path(sys.executable).parent / "kiemdiem"), "db", "upgrade"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KIEMDIEM_HOME": str(home)}
    web = subprocess.Popen(["bash", str(SCRIPT), "run", "web"], env=bare, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import urllib.request

        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{env['KIEMDIEM_WEB_PORT']}/healthz", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert web.poll() is None, web.stdout.read()
                time.sleep(0.1)
        else:
            pytest.fail("the dashboard did not answer")
    finally:
        web.terminate()
        web.wait(timeout=30)
    assert web.returncode is not None

    # A variable the shell sets wins over the saved one; a saved value with a quote is refused.
    override = run({**env, "KIEMDIEM_WORKERS": "1"}, "systemd", "workers")
    assert override.returncode == 0, override.stderr
    assert sorted(p.name for p in units.iterdir()) == ["kiemdiem-worker@.service", "kiemdiem.target"]
    assert "kiemdiem-worker@2" not in (units / "kiemdiem.target").read_text()
    quoted = run({**env, "KIEMDIEM_SMTP_FROM": "Văn phòng 'Tỉnh ủy' <vp@tinhuy.example.vn>"}, "systemd")
    assert quoted.returncode == 2 and "KIEMDIEM_SMTP_FROM" in quoted.stderr and "nothing written" in quoted.stderr
    assert "KIEMDIEM_SMTP_HOST='mail.tinhuy.example.vn'" in saved.read_text()  # the saved configuration is untouched


def test_the_saved_configuration_holds_what_was_given_and_the_script_finds_itself(tmp_path):
    """Derived values (the API's address from the port, the run folder from the home) are worked
    out again at each run, never frozen; a symlink to the script and a relative home still give
    absolute paths in the units; a bad backup time is refused."""
    caller = tmp_path / "caller"
    caller.mkdir()
    link = tmp_path / "kiemdiem-prod"
    link.symlink_to(SCRIPT)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": "home", "PREFECT_PORT": "4299", "VENV": str(Path(sys.executable).parent.parent)})
    done = subprocess.run(["bash", str(link), "systemd"], env=env, cwd=caller, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    home = caller / "home"
    saved = (home / "kiemdiem.env").read_text()
    assert f"KIEMDIEM_HOME='{home}'" in saved and "PREFECT_PORT='4299'" in saved
    assert "PREFECT_API_URL" not in saved and "KIEMDIEM_RUN" not in saved and "PREFECT_HOME" not in saved
    unit = (home / "systemd" / "kiemdiem-web.service").read_text()
    assert f'ExecStart="{SCRIPT}" run web' in unit and f"WorkingDirectory={REPO}" in unit and f"EnvironmentFile={home}/kiemdiem.env" in unit
    bad = subprocess.run(["bash", str(SCRIPT), "systemd"], env={**env, "KIEMDIEM_HOME": str(home), "KIEMDIEM_BACKUP_AT": "2h30"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "KIEMDIEM_BACKUP_AT='2h30'" in bad.stderr

    # A workers-only machine: its status does not look for a dashboard it does not run.
    workers = subprocess.run(["bash", str(SCRIPT), "systemd", "workers"], env={**env, "KIEMDIEM_HOME": str(home)},
                             capture_output=True, text=True, timeout=60)
    assert workers.returncode == 0 and "KIEMDIEM_ROLE='workers'" in (home / "kiemdiem.env").read_text()
    status = subprocess.run(["bash", str(SCRIPT), "status"], env={**env, "KIEMDIEM_HOME": str(home)}, capture_output=True, text=True, timeout=60)
    assert "prefect api:" in status.stdout and "dashboard:" not in status.stdout


def test_a_stale_pid_file_is_neither_trusted_nor_killed(tmp_path):
    """After a reboot a pid file may name another program's process: status says DOWN, stop
    leaves that process alone."""
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (home / "run" / "web.pid").write_text(str(other.pid))
        env = {**os.environ, "KIEMDIEM_HOME": str(home), "VENV": str(Path(sys.executable).parent.parent), "KIEMDIEM_WEB_PORT": "1"}
        status = run(env, "status")
        assert "DOWN  web" in status.stdout
        run(env, "stop")
        assert other.poll() is None  # still running: not ours
    finally:
        other.kill()
        other.wait()


def test_the_kiemdiem_command_runs_with_the_production_settings(tmp_path):
    env = {**os.environ, "KIEMDIEM_HOME": str(tmp_path / "home"), "VENV": str(Path(sys.executable).parent.parent)}
    done = run(env, "kiemdiem", "plan", "check", str(REPO / "plans" / "187-KH-DU-2023.yaml"))
    assert done.returncode == 0 and "Kế hoạch hợp lệ." in done.stdout
