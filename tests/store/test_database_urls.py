"""A wrong KIEMDIEM_DATABASE_URL, as an administrator meets it: the real ``kiemdiem`` command in a
subprocess, against the real PostgreSQL server (a port nothing listens on, a database or a role
that does not exist) or a socket that plays one (a server that refuses the password, one that never
answers). Each time: one message naming the setting, what is wrong and what to write, the password
hidden, no traceback, and a non-zero exit (2: the value is wrong; 5: the database cannot be reached)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, require_postgres

KIEMDIEM = Path(sys.executable).parent / "kiemdiem"
PASSWORD = "matkhau-bimat-2023"  # must never be printed


def kiemdiem(tmp_path: Path, *urls: str) -> list[tuple[int, str]]:
    """``kiemdiem campaign list`` (it opens the store first, as every command does) with only
    KIEMDIEM_DATABASE_URL set, once per URL, all at once (the command takes seconds to start); for
    each, the exit status and what it printed, rich's line wrapping undone."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KIEMDIEM_")}
    env.update({"KIEMDIEM_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    runs = [subprocess.Popen([str(KIEMDIEM), "campaign", "list"], env={**env, "KIEMDIEM_DATABASE_URL": url}, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for url in urls]
    outputs = [" ".join(run.communicate(timeout=300)[0].split()) for run in runs]
    return [(run.returncode, output) for run, output in zip(runs, outputs)]


def assert_clean(output: str) -> None:
    assert "Traceback" not in output and PASSWORD not in output, output
    assert "KIEMDIEM_DATABASE_URL" in output, output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_base() -> str:
    """``postgresql://postgres@127.0.0.1:5432`` of the test server (no database)."""
    require_postgres()
    return PG_ADMIN_URL.rsplit("/", 1)[0]


def with_password(base: str, user: str | None = None) -> str:
    """The server's URL with a user and the secret password written in (trust auth ignores it)."""
    scheme, rest = base.split("://", 1)
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{user or rest.rsplit('@', 1)[0] or 'postgres'}:{PASSWORD}@{host}"


# --- the value itself: refused before any connection (exit 2) ------------------------------

WRONG_VALUES = {
    # SQLAlchemy's own name for psycopg 2, which this project does not use (psycopg 3 it does).
    f"postgresql+psycopg2://kd:{PASSWORD}@127.0.0.1:5432/kiemdiem":
        ["trình điều khiển 'psycopg2'", "postgresql+psycopg2://kd:***@127.0.0.1:5432/kiemdiem", "postgresql+psycopg://"],
    # Prefect's URL copied into kiemdiem's.
    f"postgresql+asyncpg://kd:{PASSWORD}@127.0.0.1:5432/kiemdiem":
        ["trình điều khiển 'asyncpg'", "là dạng của PREFECT_DATABASE_URL", "postgresql+psycopg://"],
    "sqlite+aiosqlite:////var/lib/kiemdiem/kiemdiem.sqlite3": ["trình điều khiển 'aiosqlite'", "viết sqlite:///"],
    # A typo in the scheme: the nearest one is suggested, then the forms to write.
    f"postgresq://kd:{PASSWORD}@127.0.0.1:5432/kiemdiem":
        ["kiểu cơ sở dữ liệu 'postgresq'", "có phải là postgresql://?", "postgresql://NGƯỜI_DÙNG:MẬT_KHẨU@MÁY:5432/"],
    "sqllite:///kiemdiem.sqlite3": ["kiểu cơ sở dữ liệu 'sqllite'", "có phải là sqlite://?"],
    f"mysql://kd:{PASSWORD}@127.0.0.1/kiemdiem": ["kiểu cơ sở dữ liệu 'mysql'", "không được hỗ trợ", "PostgreSQL hoặc SQLite"],
    # No scheme at all: the password is hidden although SQLAlchemy cannot read the URL.
    f"kd:{PASSWORD}@127.0.0.1:5432/kiemdiem": ["'kd:***@127.0.0.1:5432/kiemdiem' không phải một địa chỉ cơ sở dữ liệu"],
    "127.0.0.1:5432/kiemdiem": ["không phải một địa chỉ cơ sở dữ liệu", "bỏ trống KIEMDIEM_DATABASE_URL"],
    # An SQLite file in a folder that does not exist: the folder named, and how to make it.
    "sqlite:///{tmp}/khong-co/kiemdiem.sqlite3": ["thư mục {tmp}/khong-co của tệp SQLite", "mkdir -p {tmp}/khong-co"],
    # A relative path (three slashes) is from the current folder: said, with the four-slash form.
    "sqlite:///var/lib/kiemdiem/kiemdiem.sqlite3":
        ["thư mục {tmp}/var/lib/kiemdiem", "đường dẫn tương đối", "sqlite:////var/lib/kiemdiem/kiemdiem.sqlite3"],
}


def test_a_url_kiemdiem_cannot_use_is_refused_with_what_to_write(tmp_path):
    urls = [url.format(tmp=tmp_path) for url in WRONG_VALUES]
    for url, expected, (status, output) in zip(urls, WRONG_VALUES.values(), kiemdiem(tmp_path, *urls)):
        assert status == 2, (url, output)
        assert output.startswith("Lỗi: biến môi trường KIEMDIEM_DATABASE_URL: "), (url, output)
        assert all(text.format(tmp=tmp_path) in output for text in expected), (url, output)
        assert_clean(output)
    assert not (tmp_path / "var").exists() and not (tmp_path / "khong-co").exists()  # nothing made where it was not meant


def test_the_postgres_scheme_is_accepted_as_postgresql(pg_base, tmp_path):
    """``postgres://`` (what Heroku and many guides write, and SQLAlchemy 2 rejects) is read as
    ``postgresql://`` with psycopg (kiemdiem.settings.normalise_database_url): it works."""
    name = f"kiemdiem_urls_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        [(status, output)] = kiemdiem(tmp_path, f"{with_password(pg_base).replace('postgresql://', 'postgres://')}/{name}")
        assert status == 0 and "Chưa có đợt kiểm điểm nào" in output, output
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the server: the URL reads well but the database cannot be reached (exit 5) ------------------


class FakePostgres:
    """A socket that plays a PostgreSQL server for libpq: it declines SSL, reads the start-up
    message and answers it with ``error`` (an ErrorResponse), or, with ``error=None``, never
    answers; ``waited`` holds, for each client, the seconds from its start-up message to its giving up."""

    def __init__(self, error: tuple[str, str] | None = None):
        self.error = error
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.waited: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:  # SSLRequest / GSSENCRequest (declined with 'N'), then the start-up message
                    length = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
                    body = conn.recv(length - 4, socket.MSG_WAITALL)
                    if struct.unpack("!I", body[:4])[0] not in (80877103, 80877104):
                        break
                    conn.sendall(b"N")
                if self.error is None:
                    asked = time.monotonic()
                    conn.recv(1)  # b"" once the client gives up and closes
                    self.waited.append(time.monotonic() - asked)
                    return
                code, message = self.error
                fields = b"".join(kind + value.encode() + b"\0" for kind, value in
                                  ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))) + b"\0"
                conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
            except (OSError, struct.error):
                pass

    def close(self) -> None:
        self.server.close()


def test_each_way_the_server_cannot_be_reached_is_named(pg_base, tmp_path):
    """A port nothing listens on, a database or a role the real server does not have, a host name
    that does not resolve, a password the server refuses (a socket playing the server: the test
    server trusts every local user)."""
    refusing = FakePostgres(("28P01", 'password authentication failed for user "kd"'))
    port, missing = free_port(), f"kiemdiem_khong_co_{os.getpid()}"
    cases = {
        f"postgresql://kd:{PASSWORD}@127.0.0.1:{port}/kiemdiem": [
            f"Lỗi: không kết nối được cơ sở dữ liệu postgresql+psycopg://kd:***@127.0.0.1:{port}/kiemdiem:",
            f"máy chủ PostgreSQL không trả lời tại 127.0.0.1:{port}", "PostgreSQL đã chạy chưa",
        ],
        f"{with_password(pg_base)}/{missing}": [
            f"chưa có cơ sở dữ liệu '{missing}'", f"sửa tên ở cuối địa chỉ, hoặc tạo cơ sở dữ liệu (createdb", "scripts/production.sh setup",
        ],
        f"{with_password(pg_base, user='khong_co_ai')}/postgres": [
            "không có người dùng (role) 'khong_co_ai'", "sửa tên người dùng trước dấu @", "createuser",
        ],
        f"postgresql://kd:{PASSWORD}@may-chu-khong-co.invalid:5432/kiemdiem": ["không tìm thấy máy 'may-chu-khong-co.invalid'"],
        f"postgresql://kd:{PASSWORD}@127.0.0.1:{refusing.port}/kiemdiem": [
            f"máy chủ 127.0.0.1:{refusing.port} từ chối đăng nhập của người dùng 'kd'", "pg_hba.conf",
            "@ thành %40",  # a password with an @ in it breaks the URL: how to write one
        ],
    }
    try:
        answers = kiemdiem(tmp_path, *cases)
    finally:
        refusing.close()
    for (url, expected), (status, output) in zip(cases.items(), answers):
        assert status == 5, (url, output)
        assert output.startswith("Lỗi: không kết nối được cơ sở dữ liệu ") and "kiểm tra KIEMDIEM_DATABASE_URL" in output, (url, output)
        assert all(text in output for text in expected), (url, output)
        assert_clean(output)


def test_a_server_that_never_answers_is_given_up_on_after_ten_seconds(tmp_path):
    """A firewall that drops the packets, a server hung: without a limit libpq would wait for
    minutes; kiemdiem gives it 10 seconds. A URL's own ?connect_timeout= wins."""
    silent, impatient = FakePostgres(), FakePostgres()
    try:
        default, own = kiemdiem(tmp_path, f"postgresql://kd:{PASSWORD}@127.0.0.1:{silent.port}/kiemdiem",
                                f"postgresql://kd:{PASSWORD}@127.0.0.1:{impatient.port}/kiemdiem?connect_timeout=2")
    finally:
        silent.close()
        impatient.close()
    assert default[0] == 5 and f"máy chủ PostgreSQL tại 127.0.0.1:{silent.port} không trả lời (hết 10 giây chờ" in default[1], default
    assert own[0] == 5 and "(hết 2 giây chờ" in own[1], own
    assert_clean(default[1])
    assert silent.waited and all(9 < waited < 13 for waited in silent.waited), silent.waited
    # libpq counts its timeout in whole seconds and checks it late on a loaded machine (4.02 s seen):
    # the same 3 s of slack as the 10 s case, still far from the default.
    assert impatient.waited and all(1 < waited < 5 for waited in impatient.waited), impatient.waited
