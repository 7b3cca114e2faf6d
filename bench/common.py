"""Benchmark helpers: timing, peak memory, fresh stores, and a null SMTP server in its own process."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN_URL = os.environ.get("KIEMDIEM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextmanager
def timed(label: str, into: dict):
    start = time.perf_counter()
    yield
    into[label] = round(time.perf_counter() - start, 3)


def save(name: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(data, ensure_ascii=False, indent=2))


def fresh_pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _serve_null(port_pipe) -> None:
    # Runs in a child process: accept every message and keep nothing.
    from aiosmtpd.controller import Controller  # noqa: PLC0415 - child process only

    class Null:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Null(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    port_pipe.send(port)
    while True:
        time.sleep(3600)


@contextmanager
def null_smtp_server():
    """An aiosmtpd server in another process that accepts and discards: measures the sender, not the sink."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_null, args=(child,), daemon=True)
    process.start()
    port = parent.recv()
    try:
        yield port
    finally:
        process.terminate()
        process.join(5)
