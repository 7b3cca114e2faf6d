"""Web benchmark: the tree page and the overview of a whole province, under load.

A province (``kiemdiem.synth`` preset ``province``, seed 1: about 3,800 units of which 3,100
branches, 86,000 members) is imported into a SQLite store, with a first phase partly
delivered. The app runs under uvicorn (``--workers``, default 2) on the loopback; a logged-in
office user at the root asks for:

- ``static``: ``/static/app.js`` from the same server (the baseline: what the stack costs);
- ``tree``: ``/c/<campaign>/tree``, every unit of the province with its state and progress;
- ``overview``: ``/c/<campaign>``, the phase timeline, counts and the overdue list;
- ``tree_while_writing``: the tree page again while documents arrive (``--writes-per-s``, default
  1): every one changes the status, which the workers rebuild in the background (seconds for a
  province) while they keep answering from the previous one.

Each is driven by ``wrk`` (Debian package ``wrk``) with 32 connections for ``--seconds``
(default 10), after a warm-up that builds each worker's status cache. Reported per page:
requests/s, p50/p95/p99 latency, bytes per response, and the ratio of requests/s to the
static file's. Results go to ``bench/results/web.json`` and are printed.

    python bench/web_bench.py [--workers 2] [--seconds 10] [--connections 32] [--writes-per-s 1] [--fresh]

Targets (2 cores): at least 200 requests/s and p95 at most 150 ms on the tree page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from kiemdiem.plan import load_plan
from kiemdiem.settings import StoreSettings, plans_dir
from kiemdiem.store.db import open_store
from kiemdiem.store.models import Campaign, Member, Submission, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.synth import generate
from kiemdiem.web.auth import create_user, find_user

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data" / "web"
RESULTS = ROOT / "bench" / "results" / "web.json"
CAMPAIGN = "province"
PLAN_FILE = "KH-DUK-HT-2022.yaml"  # applies to every kind of unit a province has
EMAIL = "vanphong@tinh.example.vn"
PASSWORD = "mat-khau-do-tai"
SECRET = "web-bench-secret"
DELIVERED_SHARE = 3  # one branch in this many sends its first-phase document

WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.3f %.3f %.3f %.3f %d %d %d\\n",
    summary.requests, summary.duration, summary.bytes, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    latency.max / 1000, summary.errors.status, summary.errors.timeout))
end
"""


def prepare(home: Path, fresh: bool) -> dict:
    """The province in a SQLite store under ``home`` (kept between runs unless --fresh)."""
    if fresh and home.exists():
        shutil.rmtree(home)
    store = open_store(StoreSettings(home=home, database_url=None))
    try:
        with store.uow() as uow:
            ready = uow.session.get(Campaign, CAMPAIGN) is not None and find_user(uow, EMAIL) is not None
        if not ready:
            build(store, home)
        with store.uow() as uow:
            units = uow.session.scalar(select(func.count()).select_from(Unit).where(Unit.campaign_id == CAMPAIGN))
            branches = uow.session.scalar(
                select(func.count()).select_from(Unit).where(Unit.campaign_id == CAMPAIGN, Unit.kind.in_(("chi_bo_co_so", "chi_bo_truc_thuoc")))
            )
            members = uow.session.scalar(select(func.count()).select_from(Member).where(Member.campaign_id == CAMPAIGN))
    finally:
        store.dispose()
    return {"preset": "province", "seed": 1, "units": units, "branches": branches, "members": members, "plan": PLAN_FILE}


def build(store, home: Path) -> None:
    started = time.monotonic()
    plan = load_plan(plans_dir() / PLAN_FILE)
    org = generate("province", 1, home / "org")
    now = dt.datetime.now(dt.timezone.utc)
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, now)
        import_organization(uow, CAMPAIGN, org.units, org.members, now)
        root = uow.session.scalar(select(Unit.code).where(Unit.campaign_id == CAMPAIGN, Unit.parent_id.is_(None)))
        create_user(uow, campaign_id=CAMPAIGN, unit_code=root, email=EMAIL, full_name="Văn phòng Tỉnh ủy", role="office",
                    now=now, password=PASSWORD, actor="bench")
        uow.commit()
    first = plan.phases[0]
    with store.uow() as uow:
        branches = list(uow.session.scalars(
            select(Unit.code).where(Unit.campaign_id == CAMPAIGN, Unit.kind.in_(first.applies_to)).order_by(Unit.code)
        ))
        doc = next(d for d in first.documents if d.required and not d.per_member)
        for n, code in enumerate(branches):
            if n % DELIVERED_SHARE == 0:
                at = first.deadline - dt.timedelta(days=1 if n % 2 else -1)  # half on time, half late
                record_submission(uow, store.blobs, plan, CAMPAIGN, code, doc.doc_type,
                                  [IncomingFile("du_thao.pdf", data=b"%PDF-1.4 " + code.encode())], at, "cli", actor="bench")
        uow.commit()
    print(f"province prepared in {time.monotonic() - started:.1f} s", flush=True)


class Writer(threading.Thread):
    """Delivers documents of branches that had not sent theirs, ``rate`` per second, while a page is under load."""

    def __init__(self, home: Path, rate: float):
        super().__init__(daemon=True)
        self.home, self.rate = home, rate
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        store = open_store(StoreSettings(home=self.home, database_url=None), run_migrations=False)
        try:
            plan = load_plan(plans_dir() / PLAN_FILE)
            first = plan.phases[0]
            doc = next(d for d in first.documents if d.required and not d.per_member)
            with store.uow() as uow:
                done = set(uow.session.scalars(select(Submission.unit_id).where(Submission.campaign_id == CAMPAIGN)))
                waiting = [code for uid, code in uow.session.execute(
                    select(Unit.id, Unit.code).where(Unit.campaign_id == CAMPAIGN, Unit.kind.in_(first.applies_to)).order_by(Unit.code)
                ) if uid not in done]
            for code in waiting:
                if self.stop.wait(1 / self.rate):
                    break
                with store.uow() as uow:
                    record_submission(uow, store.blobs, plan, CAMPAIGN, code, doc.doc_type,
                                      [IncomingFile("du_thao.pdf", data=b"%PDF-1.4 late " + code.encode())],
                                      dt.datetime.now(dt.timezone.utc), "cli", actor="bench")
                    uow.commit()
                self.written += 1
        finally:
            store.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "KIEMDIEM_HOME": str(home), "KIEMDIEM_WEB_SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT)}
    env.pop("KIEMDIEM_DATABASE_URL", None)
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "kiemdiem.web.app:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]
    return subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)


def wait_until_up(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def log_in(base: str) -> str:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
        if response.status_code != 303:
            raise RuntimeError(f"log-in failed: {response.status_code}")
        return f"kiemdiem_session={client.cookies['kiemdiem_session']}"


def warm_up(base: str, cookie: str, paths: list[str], workers: int, timeout: float = 300) -> dict[str, float]:
    """Until every worker answers each page quickly: each builds its status view and renders each page once.

    Each request opens a new connection (a kept-alive one would stay with one worker); a round
    of parallel requests all answered within 0.5 s, three times in a row, means every worker is warm.
    """
    sizes: dict[str, float] = {}
    headers = {"Cookie": cookie, "Connection": "close"}
    deadline = time.monotonic() + timeout
    quick_rounds = 0

    def fetch(path: str) -> float:
        started = time.monotonic()
        response = httpx.get(base + path, headers=headers, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code}")
        sizes[path] = len(response.content)
        return time.monotonic() - started

    first_round = None
    with ThreadPoolExecutor(max_workers=4 * workers) as pool:
        while quick_rounds < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not warm up")
            slowest = max(pool.map(fetch, paths * 4 * workers))
            first_round = slowest if first_round is None else first_round
            quick_rounds = quick_rounds + 1 if slowest < 0.5 else 0
    sizes["cold_first_request_s"] = round(first_round, 2)
    return sizes


def run_wrk(url: str, cookie: str | None, connections: int, seconds: int, threads: int, script: Path) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    requests, duration_us, size, errors, p50, p95, p99, mean, worst, status_errors, timeouts = line.split()[1:]
    seconds_run = int(duration_us) / 1e6
    return {
        "requests": int(requests),
        "seconds": round(seconds_run, 2),
        "requests_per_s": round(int(requests) / seconds_run, 1),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(mean),
        "max_ms": float(worst),
        "errors": int(errors),
        "non_2xx": int(status_errors),
        "timeouts": int(timeouts),
        "mb_per_s": round(int(size) / seconds_run / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--fresh", action="store_true", help="rebuild the province store")
    parser.add_argument("--writes-per-s", type=float, default=1.0,
                        help="submissions per second during an extra tree run (0: skip it); each one changes the status")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")

    home = DATA / "home"
    dataset = prepare(home, args.fresh)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port, args.workers)
    runs: dict[str, dict] = {}
    try:
        wait_until_up(base)
        cookie = log_in(base)
        pages = {"tree": f"/c/{CAMPAIGN}/tree", "overview": f"/c/{CAMPAIGN}"}
        started = time.monotonic()
        sizes = warm_up(base, cookie, list(pages.values()), args.workers)
        warm_seconds = round(time.monotonic() - started, 1)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "report.lua"
            script.write_text(WRK_SCRIPT)
            runs["static"] = run_wrk(f"{base}/static/app.js", None, args.connections, args.seconds, args.threads, script)
            runs["static"]["bytes_per_response"] = len(httpx.get(f"{base}/static/app.js").content)
            for name, path in pages.items():
                runs[name] = run_wrk(base + path, cookie, args.connections, args.seconds, args.threads, script)
                runs[name]["bytes_per_response"] = sizes[path]
            if args.writes_per_s > 0:
                writer = Writer(home, args.writes_per_s)
                writer.start()
                try:
                    runs["tree_while_writing"] = run_wrk(base + pages["tree"], cookie, args.connections, args.seconds, args.threads, script)
                finally:
                    writer.stop.set()
                    writer.join(timeout=30)
                runs["tree_while_writing"]["bytes_per_response"] = sizes[pages["tree"]]
                runs["tree_while_writing"]["submissions_written"] = writer.written
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    static_rate = runs["static"]["requests_per_s"] or 1.0
    for name in [n for n in runs if n != "static"]:
        runs[name]["ratio_to_static"] = round(runs[name]["requests_per_s"] / static_rate, 3)
    tree = runs["tree"]
    result = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "dataset": dataset,
        "server": {"workers": args.workers, "store": "sqlite", "warm_up_seconds": warm_seconds,
                   "cold_first_request_seconds": sizes["cold_first_request_s"]},
        "load": {"tool": "wrk", "connections": args.connections, "threads": args.threads, "seconds": args.seconds},
        "runs": runs,
        "targets": {
            "tree_requests_per_s_min": 200, "tree_p95_ms_max": 150,
            "met": tree["requests_per_s"] >= 200 and tree["p95_ms"] <= 150 and tree["errors"] == 0,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"province: {dataset['units']} units, {dataset['branches']} branches, {dataset['members']} members; "
          f"{args.workers} workers, wrk {args.connections} connections x {args.seconds} s")
    print(f"{'page':10} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'KB/resp':>8} {'errors':>7} {'vs static':>9}")
    for name, run in runs.items():
        ratio = run.get("ratio_to_static", 1.0)
        print(f"{name:10} {run['requests_per_s']:8.1f} {run['p50_ms']:8.1f} {run['p95_ms']:8.1f} {run['p99_ms']:8.1f} "
              f"{run['bytes_per_response'] / 1024:8.1f} {run['errors']:7d} {ratio:9.3f}")
    print(f"targets (tree >= 200 req/s, p95 <= 150 ms): {'met' if result['targets']['met'] else 'NOT met'}; written to {RESULTS}")


if __name__ == "__main__":
    main()
