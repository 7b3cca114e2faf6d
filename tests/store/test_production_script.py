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
    assert bare.returncode == 2 and "usage: scripts/production.sh restore <backup>" in bare.stderr
    assert "20261121T010000Z" not in bare.stderr and "(none)" in bare.stderr  # a folder without its dumps is no backup
    missing = run(env, "restore", "20261121T010000Z")  # a folder without its dumps
    assert missing.returncode == 2 and "no backup at" in missing.stdout


def test_restore_offers_complete_backups_newest_first_and_never_one_that_did_not_finish(tmp_path):
    """The list a bare ``restore`` prints held every folder of the backups' directory: a failed
    backup (.partial), an administrator's own copy, folders without dumps. Only complete backups
    are offered now, newest first; a .partial one is named apart and refused when asked for."""
    home = tmp_path / "home"
    backups = home / "backups"
    for name, files in {
        "20261119T023000Z": ("kiemdiem.dump", "prefect.dump"),
        "20261121T023000Z": ("kiemdiem.dump", "prefect.dump"),
        "20261120T023000Z": ("kiemdiem.dump", "prefect.dump"),
        "20261122T023000Z.partial": ("kiemdiem.dump", "prefect.dump"),  # cut off before its files were copied
        "20261118T023000Z": ("ghi-chu.txt",),  # a backup's name but no dumps
        "truoc nang cap": ("kiemdiem.dump", "prefect.dump"),  # an administrator's own copy
        "blobs": ("ab",),
    }.items():
        (backups / name).mkdir(parents=True)
        for file in files:
            (backups / name / file).write_bytes(b"PGDMP")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(home), "VENV": str(Path(sys.executable).parent.parent)})
    bare = run(env, "restore")
    assert bare.returncode == 2, bare.stderr
    listed = [line.strip() for line in bare.stderr.splitlines()[1:]]
    assert listed == ["20261121T023000Z", "20261120T023000Z", "20261119T023000Z",
                      "(20261122T023000Z.partial: did not finish, not restorable)"], bare.stderr
    partial = run(env, "restore", "20261122T023000Z.partial")
    assert partial.returncode == 2 and "a backup that did not finish" in partial.stdout, partial.stdout + partial.stderr
    assert (backups / "20261122T023000Z.partial" / "kiemdiem.dump").exists()


@pytest.mark.parametrize("url, says", [
    ("postgresql://postgres@127.0.0.1:5432/prefect", "needs the asyncpg driver: write postgresql+asyncpg://postgres@127.0.0.1:5432/prefect"),
    ("postgresql+psycopg://kd:matkhau-bimat@db:5432/prefect", "write postgresql+asyncpg://kd:***@db:5432/prefect"),
    ("sqlite+aiosqlite:////var/lib/kiemdiem/prefect.db", "production keeps Prefect's database on PostgreSQL"),
    ("127.0.0.1:5432/prefect", "not a PostgreSQL address for Prefect"),
])
def test_a_prefect_database_address_of_another_form_is_refused_before_anything_is_done(tmp_path, stub_venv, url, says):
    """Prefect's server only takes postgresql+asyncpg://; with another form it exited at start
    (a traceback in its log) after setup had already created databases, or a backup failed in psql."""
    venv, calls = stub_venv
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(home), "VENV": str(venv), "KIEMDIEM_CAMPAIGN": "sct2023", "PREFECT_DATABASE_URL": url,
                "KIEMDIEM_DATABASE_URL": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/kiemdiem_never_{os.getpid()}"})
    for command, nothing in (("setup", "nothing done"), ("backup", "no backup taken"), ("restore", "nothing restored")):
        done = run(env, command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"PREFECT_DATABASE_URL=" in done.stderr and says in done.stderr and nothing in done.stderr, done.stderr
        assert "matkhau-bimat" not in done.stdout + done.stderr
    assert not calls.exists() and not (home / "backups").exists()


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


# --- stop: a worker stops on SIGTERM, promptly and cleanly --------------------------------------


def script_functions(*names: str) -> str:
    """The named functions (and the STOP_TIMEOUT setting, when the script has one) as the script
    defines them, to be run on their own."""
    lines = SCRIPT.read_text().splitlines()
    found = [line for line in lines if line.startswith("STOP_TIMEOUT=")]
    for name in names:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}() {{"))
        end = start if lines[start].rstrip().endswith("}") else next(i for i in range(start, len(lines)) if lines[i] == "}")
        found += lines[start:end + 1]
    return "\n".join(found)


def shell(run_dir: Path, code: str, setup: str = "") -> subprocess.CompletedProcess:
    functions = script_functions("log", "running", "rotate_log", "spawn", "stop_one")
    program = f"set -euo pipefail\n{functions}\nKIEMDIEM_RUN={run_dir}\nKIEMDIEM_LOG_MAX_MB=100\n{setup}\n{code}"
    return subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=120)


# As a Prefect worker: Prefect's own signal handlers for `prefect worker start`, set up inside the
# event loop as the command does (SIGTERM: it sends itself SIGINT, which cancels the loop).
FAKE_WORKER = '''
import asyncio, os
from prefect.utilities.processutils import setup_signal_handlers_worker

async def main():
    setup_signal_handlers_worker(os.getpid(), "the process worker", lambda text: print(text, flush=True))
    print("Worker started!", flush=True)
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        print("Worker stopped!", flush=True)
        raise

asyncio.run(main())
'''


def wait_for(path: Path, text: str) -> None:
    for _ in range(600):
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    pytest.fail(f"no '{text}' in {path}: {path.read_text() if path.exists() else 'no file'}")


def test_stop_stops_a_prefect_worker_in_a_second_not_by_sigkill_after_the_timeout(tmp_path):
    """A worker `spawn` started (in the background, as `start` does) gets SIGINT back: bash starts
    background commands with it ignored, and the worker's answer to SIGTERM is to send itself SIGINT.
    By hand, with real `prefect worker start` processes, `stop` of two workers took 20.7 s (each
    killed after 10 s) before the fix and 1.6 s after it."""
    run_dir = tmp_path / "run"
    worker = tmp_path / "fake_prefect_worker.py"  # 'prefect' in its command line: `running` takes it as ours
    worker.write_text(FAKE_WORKER)
    started = shell(run_dir, f"spawn worker-1 {sys.executable} {worker}")
    assert started.returncode == 0, started.stderr
    log = run_dir / "worker-1.log"
    wait_for(log, "Worker started!")
    pid = int((run_dir / "worker-1.pid").read_text())

    begun = time.monotonic()
    stopped = shell(run_dir, f"stop_one {run_dir}/worker-1.pid")
    took = time.monotonic() - begun
    assert stopped.returncode == 0 and "stopped worker-1" in stopped.stdout, stopped.stderr
    assert "did not stop" not in stopped.stdout
    assert "Received SIGTERM. Sending SIGINT" in log.read_text() and "Worker stopped!" in log.read_text(), log.read_text()
    assert took < 5, took  # 10 s and a SIGKILL before
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (run_dir / "worker-1.pid").exists()


def test_stop_still_kills_a_process_that_hangs_after_the_timeout(tmp_path):
    run_dir = tmp_path / "run"
    hang = tmp_path / "hung_prefect_worker.py"
    hang.write_text("import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\n"
                    "print('ready', flush=True)\ntime.sleep(600)\n")
    assert shell(run_dir, f"spawn worker-1 {sys.executable} {hang}").returncode == 0
    wait_for(run_dir / "worker-1.log", "ready")
    pid = int((run_dir / "worker-1.pid").read_text())
    stopped = shell(run_dir, f"stop_one {run_dir}/worker-1.pid", setup="STOP_TIMEOUT=2")
    assert stopped.returncode == 0 and "stopped worker-1" in stopped.stdout, stopped.stderr
    for _ in range(50):  # SIGKILL is not waited for by stop_one; the process is gone a moment later
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hung process is still running")


# --- the file store: modes whatever the umask ---------------------------------------------------


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_stored_files_and_their_folders_have_fixed_modes_whatever_the_umask(tmp_path, umask):
    """Submitted documents: owner read/write and group read (0640), folders 0750, nothing for
    others, whoever stores them (the services run under umask 077, an operator's shell may have 000).
    Written whole under a temporary name, then renamed: no partial file at a blob's path."""
    from kiemdiem.store.blobs import BlobStore

    source = tmp_path / "bien_ban.pdf"
    source.write_bytes(b"%PDF-1.4 bien ban hop chi bo" * 1000)
    store = BlobStore(tmp_path / "home" / "blobs")
    previous = os.umask(umask)
    try:
        sha_bytes, _ = store.put_bytes(b"%PDF-1.4 ban kiem diem ca nhan")
        sha_file, size = store.put_file(source)
    finally:
        os.umask(previous)
    assert size == source.stat().st_size and store.read(sha_file) == source.read_bytes()
    for sha in (sha_bytes, sha_file):
        path = store.path(sha)
        assert path == tmp_path / "home" / "blobs" / sha[:2] / sha[2:4] / sha  # the layout is unchanged
        assert oct(path.stat().st_mode & 0o777) == oct(0o640)
        for folder in (path.parent, path.parent.parent, store.root):
            assert oct(folder.stat().st_mode & 0o777) == oct(0o750), folder
    assert not list(store.root.rglob(".incoming-*"))

    def interrupted():
        yield b"half of a document"
        raise OSError("disk full")

    with pytest.raises(OSError):
        store._write("ef" * 32, interrupted())
    assert not store.path("ef" * 32).exists() and not list(store.root.rglob(".incoming-*"))


# --- setup: the campaign the hourly tick runs ----------------------------------------------------


@pytest.fixture
def stub_venv(tmp_path):
    """A venv whose kiemdiem and python are the real ones and whose pip and prefect only note
    their arguments (setup neither reinstalls the project nor starts a Prefect server here)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls"
    real = Path(sys.executable).parent
    for name, body in {"pip": f'echo "pip $*" >>{calls}', "prefect": f'echo "prefect $*" >>{calls}',
                       "kiemdiem": f'exec {real / "kiemdiem"} "$@"', "python": f'exec {sys.executable} "$@"'}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir.parent, calls


@pytest.fixture
def prefect_api():
    """An address whose /health answers 200, as the Prefect API's does."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


def test_setup_refuses_an_empty_campaign_and_warns_of_one_the_database_does_not_have(databases, tmp_path, stub_venv, prefect_api, plan_187):
    kiemdiem_url, prefect_url = databases
    venv, calls = stub_venv
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(tmp_path / "home"), "KIEMDIEM_DATABASE_URL": kiemdiem_url, "PREFECT_DATABASE_URL": prefect_url,
                "VENV": str(venv), "PREFECT_API_URL": prefect_api})

    empty = run(env, "setup")  # KIEMDIEM_CAMPAIGN not set: the deployment would carry campaign_id ''
    assert empty.returncode == 2 and "KIEMDIEM_CAMPAIGN is empty" in empty.stderr and "nothing done" in empty.stderr, empty.stdout + empty.stderr
    assert not calls.exists()  # refused before anything: no pip, no prefect

    first = run({**env, "KIEMDIEM_CAMPAIGN": "sct2023"}, "setup")  # the first setup: no campaign yet, as the README's order has it
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no campaign yet: create 'sct2023' next" in first.stdout and "WARNING" not in first.stderr
    assert "prefect --no-prompt deploy --all" in calls.read_text() and "setup done" in first.stdout

    store = open_store(StoreSettings(home=tmp_path / "home", database_url=kiemdiem_url))
    try:
        with store.uow() as uow:
            create_campaign(uow, plan_187, "c187", ict(2023, 11, 20))
            uow.commit()
    finally:
        store.dispose()
    typo = run({**env, "KIEMDIEM_CAMPAIGN": "c817"}, "setup")
    assert typo.returncode == 0, typo.stdout + typo.stderr  # said, not refused: a new campaign may be created after its setup
    assert "WARNING: KIEMDIEM_CAMPAIGN='c817' is not a campaign of this database, which has: c187." in typo.stderr
    known = run({**env, "KIEMDIEM_CAMPAIGN": "c187"}, "setup")
    assert known.returncode == 0 and "WARNING" not in known.stderr and "no campaign yet" not in known.stdout, known.stdout + known.stderr


def test_setup_names_the_database_setting_psql_cannot_connect_with(tmp_path, stub_venv):
    venv, calls = stub_venv
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(tmp_path / "home"), "VENV": str(venv), "KIEMDIEM_CAMPAIGN": "sct2023",
                "KIEMDIEM_DATABASE_URL": f"postgresql://kd:matkhau-bimat@127.0.0.1:{port}/kiemdiem"})
    done = run(env, "setup")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"KIEMDIEM_DATABASE_URL=postgresql://kd:***@127.0.0.1:{port}/kiemdiem: psql cannot connect with it" in done.stderr
    assert "matkhau-bimat" not in done.stdout + done.stderr


# --- backup: the newest KIEMDIEM_BACKUP_KEEP are kept -------------------------------------------


def test_a_backup_keeps_the_newest_backups_and_removes_only_older_backups(databases, tmp_path):
    kiemdiem_url, prefect_url = databases
    home = tmp_path / "home"
    backups = home / "backups"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(home), "KIEMDIEM_DATABASE_URL": kiemdiem_url, "PREFECT_DATABASE_URL": prefect_url,
                "VENV": str(Path(sys.executable).parent.parent), "KIEMDIEM_BACKUP_KEEP": "3"})
    old = [f"2000010{day}T023000Z" for day in range(1, 6)]  # five nights' backups, long before today's
    for name in old:
        (backups / name).mkdir(parents=True)
        (backups / name / "kiemdiem.dump").write_bytes(b"PGDMP")
        (backups / name / "prefect.dump").write_bytes(b"PGDMP")
    untouchable = {
        "blobs": "ab/cd/" + "ab" * 32,  # the shared submitted files
        "19991231T023000Z": "ghi-chu.txt",  # a backup's name but no kiemdiem.dump: not one of the script's backups
        "19991230T023000Z.partial": "kiemdiem.dump",  # a backup that failed
        "truoc-nang-cap": "kiemdiem.dump",  # an administrator's own copy
    }
    for folder, file in untouchable.items():
        (backups / folder / file).parent.mkdir(parents=True, exist_ok=True)
        (backups / folder / file).write_bytes(b"x")
    outside = tmp_path / "elsewhere"
    (outside / "kiemdiem.dump").parent.mkdir(parents=True)
    (outside / "kiemdiem.dump").write_bytes(b"PGDMP")
    (backups / "19991229T023000Z").symlink_to(outside)  # a link: neither followed nor removed

    done = run(env, "backup")
    assert done.returncode == 0, done.stderr
    [new] = [p.name for p in backups.iterdir() if p.name[:1].isdigit() and p.name > "2001"]  # today's
    assert (backups / new / "kiemdiem.dump").stat().st_size > 0 and (backups / new / "prefect.dump").stat().st_size > 0
    kept = sorted(p.name for p in backups.iterdir())
    assert kept == sorted([*untouchable, "19991229T023000Z", old[-2], old[-1], new]), kept
    for name in old[:3]:
        assert f"removed old backup {name} (KIEMDIEM_BACKUP_KEEP=3)" in done.stdout
    assert all((backups / folder / file).exists() for folder, file in untouchable.items()) and (outside / "kiemdiem.dump").exists()

    # A backup that fails (Prefect's database is gone) removes nothing, even with room for one only.
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{prefect_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    time.sleep(1.1)  # a backup of another second
    failed = run({**env, "KIEMDIEM_BACKUP_KEEP": "1"}, "backup")
    assert failed.returncode != 0 and "backup failed (pg_dump of Prefect's database)" in failed.stderr and "no backup was removed" in failed.stderr
    assert "removed" not in failed.stdout
    [left] = {p.name for p in backups.iterdir()} - set(kept)  # the failed backup's folder, for whoever looks into it
    assert left.endswith(".partial")


@pytest.mark.parametrize("keep", ["0", "-3", "abc", "14 ", "1.5"])  # empty: the default, as for every setting
def test_a_backup_count_that_is_not_a_positive_whole_number_is_refused(tmp_path, keep):
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(home), "VENV": str(Path(sys.executable).parent.parent), "KIEMDIEM_BACKUP_KEEP": keep})
    backup = run(env, "backup")
    assert backup.returncode == 2 and f"KIEMDIEM_BACKUP_KEEP='{keep}'" in backup.stderr and "no backup taken" in backup.stderr
    assert not (home / "backups").exists() or not any((home / "backups").iterdir())
    systemd = run(env, "systemd")
    assert systemd.returncode == 2 and "nothing written" in systemd.stderr and not (home / "kiemdiem.env").exists()


def test_the_backup_count_given_is_saved_with_the_configuration(tmp_path):
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIEMDIEM_", "PREFECT_"))}
    env.update({"KIEMDIEM_HOME": str(home), "VENV": str(Path(sys.executable).parent.parent), "KIEMDIEM_BACKUP_KEEP": "30"})
    assert run(env, "systemd").returncode == 0
    assert "KIEMDIEM_BACKUP_KEEP='30'\n" in (home / "kiemdiem.env").read_text()
