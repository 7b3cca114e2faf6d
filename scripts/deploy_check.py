"""Scripted check: prefect.yaml deploys, and workers on a process work pool run the tick.

Starts `prefect server start` (on PostgreSQL when --prefect-db is given), creates the
process work pool, runs `prefect deploy --all` from prefect.yaml, starts N workers, runs the
tick deployment for a campaign at a given `now`, and waits for it to complete. Used by
tests/flows/test_deploy_worker.py, tests/flows/test_distributed.py and by the production
script; everything it starts, it stops.

``--fan-out N`` runs the distributed tick (N tick-part runs shared by the workers);
``--kill-part-worker`` then kills (SIGKILL) a worker in the middle of the tick, together with
the tick-part run it is running, and the tick must still complete.

    python scripts/deploy_check.py --campaign C --now 2023-11-30T08:00:00+07:00 [--workers 2] [--prefect-db URL]
        [--fan-out 2 [--kill-part-worker]]

``PrefectStack`` keeps one server and its deployments up across several runs, each with its
own workers (and their environment: database, data directory, SMTP port).
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

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

REPO = Path(__file__).resolve().parent.parent
PREFECT = [sys.executable, "-m", "prefect"]
POOL = "kiemdiem-process"
TICK_DEPLOYMENT = "kiemdiem-tick/tick"
PART_FLOW = "kiemdiem-tick-part"


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
                process.wait(timeout=15)
        handle.close()

    stack.callback(stop)
    return process


def run(args: list[str], env: dict) -> str:
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _kill(pid: int) -> None:
    """SIGKILL a process and its group (each flow run and each worker leads its own session)."""
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            return
        except (ProcessLookupError, PermissionError):
            continue


class Workers:
    """Worker processes of one run; ``stop()`` ends them (``PrefectStack`` does at the latest)."""

    def __init__(self, stack: ExitStack, processes: dict[str, subprocess.Popen]):
        self._stack = stack
        self.processes = processes

    def stop(self) -> None:
        for process in self.processes.values():  # all at once: each takes a few seconds to wind down
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self._stack.close()


class PrefectStack:
    """A Prefect server with the project's deployments, for one or more runs of the tick."""

    def __init__(self, logs: Path, prefect_db: str | None = None, campaign: str = "", env: dict | None = None):
        self.logs = Path(logs)
        self.prefect_db = prefect_db
        self.campaign = campaign
        self.extra_env = dict(env or {})
        self.api = ""
        self.env: dict[str, str] = {}
        self._stack = ExitStack()

    def __enter__(self) -> PrefectStack:
        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(self.logs / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "KIEMDIEM_REPO": str(REPO),
            "KIEMDIEM_CAMPAIGN": self.campaign,
            "PYTHONPATH": str(REPO),
            **self.extra_env,
        }
        if self.prefect_db:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.prefect_db
        try:
            start(self._stack, [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], self.env, self.logs / "server.log")
            wait_healthy(self.api)
            run([*PREFECT, "work-pool", "create", POOL, "--type", "process", "--overwrite"], self.env)
            (self.logs / "deploy.log").write_text(run([*PREFECT, "--no-prompt", "deploy", "--all"], self.env), encoding="utf-8")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def start_workers(self, count: int, env: dict | None = None, *, prefix: str = "worker", limit: int = 2,
                      heartbeat_seconds: float | None = None) -> Workers:
        """``count`` workers on the pool, named ``{prefix}-{i}``, with ``env`` on top of the stack's environment."""
        worker_env = {**self.env, **(env or {})}
        if heartbeat_seconds is not None:
            worker_env["PREFECT_WORKER_HEARTBEAT_SECONDS"] = str(heartbeat_seconds)
        stack = ExitStack()
        self._stack.callback(stack.close)
        processes = {}
        for i in range(count):
            name = f"{prefix}-{i}"
            processes[name] = start(
                stack, [*PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", str(limit)], worker_env, self.logs / f"{name}.log"
            )
        return Workers(stack, processes)

    def run_tick(self, campaign: str, now: str, *, parameters: dict | None = None, timeout: float = 240,
                 kill_part_worker: Workers | None = None, kill_delay: float = 0.5) -> dict:
        """Run the tick deployment and wait for it. With ``kill_part_worker``, SIGKILL the worker of
        that group running a tick-part (never the tick's own worker), with that part's process,
        ``kill_delay`` seconds after the part started running."""
        return asyncio.run(self._run_tick(campaign, now, parameters or {}, timeout, kill_part_worker, kill_delay))

    async def _run_tick(self, campaign, now, parameters, timeout, workers, kill_delay) -> dict:
        # Prefect reads its settings once, at import: point this process's client at the server explicitly.
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            async with get_client() as client:
                flow_run = await run_deployment(
                    name=TICK_DEPLOYMENT, parameters={"campaign_id": campaign, "now": now, **parameters}, timeout=0, as_subflow=False
                )
                deadline = time.monotonic() + timeout
                killed, running_since = None, {}
                while True:
                    flow_run = await client.read_flow_run(flow_run.id)
                    if flow_run.state is not None and flow_run.state.is_final():
                        break
                    if time.monotonic() > deadline:
                        break
                    if workers is not None and killed is None:
                        killed = await _kill_a_part_worker(client, flow_run, workers, running_since, kill_delay)
                    await asyncio.sleep(0.25 if workers is not None and killed is None else 1.0)
                parts = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]))
                )
        return {
            "id": str(flow_run.id),
            "state": flow_run.state.type.value if flow_run.state else None,
            "name": flow_run.name,
            "worker": (flow_run.labels or {}).get("prefect.worker.name"),
            "parts": [
                {
                    "name": p.name,
                    "state": p.state.type.value if p.state else None,
                    "message": p.state.message if p.state else None,
                    "worker": (p.labels or {}).get("prefect.worker.name"),
                }
                for p in sorted(parts, key=lambda p: p.name)
            ],
            "killed": killed,
        }


async def _kill_a_part_worker(client, tick_run, workers: Workers, running_since: dict, delay: float) -> dict | None:
    tick_worker = (tick_run.labels or {}).get("prefect.worker.name")
    parts = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[tick_run.id]))
    )
    for part in parts:
        worker = (part.labels or {}).get("prefect.worker.name")
        if part.state is None or not part.state.is_running() or not part.infrastructure_pid:
            continue
        if worker is None or worker == tick_worker or worker not in workers.processes:
            continue
        first = running_since.setdefault(part.id, time.monotonic())
        if time.monotonic() - first < delay:
            continue
        process = workers.processes[worker]
        _kill(process.pid)  # the worker: it stops polling and sending heartbeats
        _kill(int(part.infrastructure_pid))  # and the part it runs (flow runs have their own session)
        return {"worker": worker, "part": part.name, "part_pid": int(part.infrastructure_pid), "tick_worker": tick_worker}
    return None


def check(
    campaign: str, now: str, workers: int, prefect_db: str | None, logs: Path, timeout: float = 240,
    kill_worker_after: float | None = None, *, parameters: dict | None = None, kill_part_worker: bool = False,
    env: dict | None = None, heartbeat_seconds: float | None = None,
) -> dict:
    """One server, ``workers`` workers, one tick. ``kill_worker_after``: SIGKILL the first worker's
    process group after that many seconds; ``kill_part_worker``: kill a worker running a tick-part."""
    with PrefectStack(logs, prefect_db, campaign=campaign, env=env) as stack:
        group = stack.start_workers(workers, heartbeat_seconds=heartbeat_seconds)
        if kill_worker_after is not None:
            first = next(iter(group.processes.values()))

            def kill_first() -> None:
                time.sleep(kill_worker_after)
                if first.poll() is None:
                    _kill(first.pid)

            threading.Thread(target=kill_first, daemon=True).start()
        return stack.run_tick(campaign, now, parameters=parameters, timeout=timeout, kill_part_worker=group if kill_part_worker else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefect-db", default=None, help="postgresql+asyncpg://... for the Prefect server")
    parser.add_argument("--logs", type=Path, default=None)
    parser.add_argument("--fan-out", type=int, default=None, help="run the distributed tick in this many parts")
    parser.add_argument("--kill-part-worker", action="store_true", help="kill a worker running a tick-part mid-tick")
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="kiemdiem-deploy-"))
    parameters = {"fan_out": args.fan_out} if args.fan_out else {}
    result = check(
        args.campaign, args.now, args.workers, args.prefect_db, logs, args.timeout, parameters=parameters,
        kill_part_worker=args.kill_part_worker, heartbeat_seconds=5 if args.kill_part_worker else None,
    )
    print(json.dumps({**result, "logs": str(logs)}, ensure_ascii=False))
    sys.exit(0 if result["state"] == "COMPLETED" else 1)


if __name__ == "__main__":
    main()
