"""Scripted check: prefect.yaml deploys, and workers on a process work pool run the tick.

Starts `prefect server start` (on PostgreSQL when --prefect-db is given), creates the
process work pool, runs `prefect deploy --all` from prefect.yaml, starts N workers, runs the
tick deployment for a campaign at a given `now`, and waits for it to complete. Used by
tests/flows/test_deploy_worker.py and by the production script; everything it starts, it stops.

    python scripts/deploy_check.py --campaign C --now 2023-11-30T08:00:00+07:00 [--workers 2] [--prefect-db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

REPO = Path(__file__).resolve().parent.parent
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(api: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {api} did not become healthy")


def start(stack: ExitStack, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "ab")
    process = subprocess.Popen(args, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        handle.close()

    stack.callback(stop)
    return process


def run(args: list[str], env: dict) -> str:
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


async def run_tick(api: str, campaign: str, now: str, timeout: float) -> dict:
    # Prefect reads its settings once, at import: point this process's client at the server explicitly.
    with temporary_settings(updates={PREFECT_API_URL: api}):
        flow_run = await run_deployment(name="kiemdiem-tick/tick", parameters={"campaign_id": campaign, "now": now}, timeout=timeout)
    return {"id": str(flow_run.id), "state": flow_run.state.type.value if flow_run.state else None, "name": flow_run.name}


def check(campaign: str, now: str, workers: int, prefect_db: str | None, logs: Path, timeout: float = 240, kill_worker_after: float | None = None) -> dict:
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(logs / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "KIEMDIEM_REPO": str(REPO),
        "KIEMDIEM_CAMPAIGN": campaign,
        "PYTHONPATH": str(REPO),
    }
    if prefect_db:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db
    with ExitStack() as stack:
        start(stack, [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs / "server.log")
        wait_healthy(api)
        run([*PREFECT, "work-pool", "create", "kiemdiem-process", "--type", "process", "--overwrite"], env)
        (logs / "deploy.log").write_text(run([*PREFECT, "--no-prompt", "deploy", "--all"], env), encoding="utf-8")
        procs = [
            start(stack, [*PREFECT, "worker", "start", "--pool", "kiemdiem-process", "--name", f"worker-{i}", "--limit", "2"], env, logs / f"worker-{i}.log")
            for i in range(workers)
        ]
        if kill_worker_after is not None:
            def kill_first() -> None:
                time.sleep(kill_worker_after)
                if procs[0].poll() is None:
                    os.killpg(procs[0].pid, signal.SIGKILL)

            threading.Thread(target=kill_first, daemon=True).start()
        result = asyncio.run(run_tick(api, campaign, now, timeout))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefect-db", default=None, help="postgresql+asyncpg://... for the Prefect server")
    parser.add_argument("--logs", type=Path, default=None)
    args = parser.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="kiemdiem-deploy-"))
    result = check(args.campaign, args.now, args.workers, args.prefect_db, logs)
    print(json.dumps({**result, "logs": str(logs)}, ensure_ascii=False))
    sys.exit(0 if result["state"] == "COMPLETED" else 1)


if __name__ == "__main__":
    main()
